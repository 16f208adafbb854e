package apiserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// outputKind is what the client asked the response body to be.
type outputKind int

const (
	outputObject outputKind = iota
	outputTable
	outputPartialMetadata
)

// negotiated is the outcome of reading the Accept header.
type negotiated struct {
	kind  outputKind
	yaml  bool
	proto bool
}

// negotiate picks the first acceptable media type in Accept, as Kubernetes
// does: JSON or YAML, optionally as a meta.k8s.io Table or
// PartialObjectMetadata. Protobuf and CBOR are not served; a client that only
// accepts those gets 406.
func negotiate(r *http.Request) (negotiated, error) {
	accept := r.Header.Get("Accept")
	if strings.TrimSpace(accept) == "" {
		return negotiated{}, nil
	}
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		var n negotiated
		switch mt {
		case "application/json", "*/*", "application/*", "application/json;stream=watch":
		case "application/yaml":
			n.yaml = true
		case contentTypeProtobuf:
			n.proto = true
		default:
			continue
		}
		if as := params["as"]; as != "" {
			if params["g"] != "meta.k8s.io" || (params["v"] != "v1" && params["v"] != "v1beta1") {
				continue
			}
			switch as {
			case "Table":
				n.kind = outputTable
			case "PartialObjectMetadata", "PartialObjectMetadataList":
				n.kind = outputPartialMetadata
			default:
				continue
			}
		}
		return n, nil
	}
	return negotiated{}, apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "get", metav1.SchemeGroupVersion.WithResource("").GroupResource(), "",
		fmt.Sprintf("only the following media types are accepted: application/json, application/yaml, application/json;as=Table;v=v1;g=meta.k8s.io (asked for %q)", accept), 0, false)
}

// writeObject encodes obj as JSON, YAML or protobuf with the given code.
func writeObject(w http.ResponseWriter, r *http.Request, n negotiated, code int, obj interface{}) {
	if ro, ok := obj.(runtime.Object); ok && n.proto && n.kind == outputObject {
		var buf bytes.Buffer
		if err := protoSer.Encode(ro, &buf); err == nil {
			w.Header().Set("Content-Type", contentTypeProtobuf)
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(code)
			if r.Method != http.MethodHead {
				_, _ = w.Write(buf.Bytes())
			}
			return
		}
		// Types without a protobuf form (Tables, discovery) fall through to JSON.
	}
	data, err := json.Marshal(obj)
	if err != nil {
		writeError(w, apierrors.NewInternalError(fmt.Errorf("encode response: %w", err)))
		return
	}
	ct := "application/json"
	if n.yaml {
		if data, err = yaml.JSONToYAML(data); err != nil {
			writeError(w, apierrors.NewInternalError(fmt.Errorf("encode response: %w", err)))
			return
		}
		ct = "application/yaml"
	} else if r.URL.Query().Get("pretty") == "true" {
		var v interface{}
		if json.Unmarshal(data, &v) == nil {
			if pretty, err := json.MarshalIndent(v, "", "  "); err == nil {
				data = pretty
			}
		}
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		_, _ = w.Write(append(data, '\n'))
	}
}
