package apiserver

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// scheme knows every type berth decodes from requests: the built-in kinds
// and the meta.k8s.io options (DeleteOptions) clients send.
var scheme = newScheme()

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err) // static registration; cannot fail at run time
	}
	metav1.AddToGroupVersion(s, metav1.SchemeGroupVersion)
	return s
}

// The serializers for request bodies and responses.
var (
	strictJSON = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Strict: true})
	strictYAML = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Yaml: true, Strict: true})
	protoSer   = protobuf.NewSerializer(scheme, scheme)
)

const contentTypeProtobuf = "application/vnd.kubernetes.protobuf"

func schemeObjectKinds(obj runtime.Object) ([]schema.GroupVersionKind, bool, error) {
	return scheme.ObjectKinds(obj)
}
