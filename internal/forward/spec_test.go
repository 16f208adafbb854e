package forward

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestParsePort(t *testing.T) {
	tests := []struct {
		in      string
		want    PortSpec
		wantErr string
	}{
		{in: "8080:80", want: PortSpec{Local: 8080, Remote: intstr.FromInt32(80)}},
		{in: "80", want: PortSpec{Local: 80, SameLocal: true, Remote: intstr.FromInt32(80)}},
		{in: ":80", want: PortSpec{Local: 0, Remote: intstr.FromInt32(80)}},
		{in: "0:80", want: PortSpec{Local: 0, Remote: intstr.FromInt32(80)}},
		{in: "8080:http", want: PortSpec{Local: 8080, Remote: intstr.FromString("http")}},
		{in: "http", want: PortSpec{SameLocal: true, Remote: intstr.FromString("http")}},
		{in: ":http-alt", want: PortSpec{Remote: intstr.FromString("http-alt")}},
		{in: "65535:65535", want: PortSpec{Local: 65535, Remote: intstr.FromInt32(65535)}},
		{in: "", wantErr: "REMOTE is missing"},
		{in: "8080:", wantErr: "REMOTE is missing"},
		{in: "1:2:3", wantErr: "use [LOCAL:]REMOTE"},
		{in: "0", wantErr: "must be 1-65535"},
		{in: "8080:0", wantErr: "must be 1-65535"},
		{in: "8080:70000", wantErr: "must be 1-65535"},
		{in: "70000:80", wantErr: "local port \"70000\" must be a number"},
		{in: "abc:80", wantErr: "local port \"abc\" must be a number"},
		{in: "-1:80", wantErr: "local port \"-1\" must be a number"},
		{in: "8080:Bad_Name", wantErr: "neither a port number nor a valid port name"},
		{in: "8080:this-name-is-too-long", wantErr: "neither a port number nor a valid port name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePort(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePort(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePort(%q): %v", tt.in, err)
			}
			tt.want.Arg = tt.in
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParsePort(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		kind    Kind
		name    string
		wantErr string
	}{
		{in: "svc/web", kind: KindService, name: "web"},
		{in: "service/web", kind: KindService, name: "web"},
		{in: "services/web", kind: KindService, name: "web"},
		{in: "SVC/web", kind: KindService, name: "web"},
		{in: "pod/web-0", kind: KindPod, name: "web-0"},
		{in: "pods/web-0", kind: KindPod, name: "web-0"},
		{in: "po/web-0", kind: KindPod, name: "web-0"},
		{in: "deploy/api", kind: KindDeployment, name: "api"},
		{in: "deployment/api", kind: KindDeployment, name: "api"},
		{in: "deployments/a.b", kind: KindDeployment, name: "a.b"},
		{in: "web", wantErr: "use svc/NAME"},
		{in: "job/x", wantErr: `unknown kind "job"`},
		{in: "/x", wantErr: `unknown kind ""`},
		{in: "svc/", wantErr: "name after \"svc/\" is missing"},
		{in: "svc/Web", wantErr: "not a valid object name"},
		{in: "svc/a/b", wantErr: "not a valid object name"},
		{in: "svc/a_b", wantErr: "not a valid object name"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			kind, name, err := ParseTarget(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTarget(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || kind != tt.kind || name != tt.name {
				t.Fatalf("ParseTarget(%q) = %q, %q, %v; want %q, %q", tt.in, kind, name, err, tt.kind, tt.name)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    []string // "kind/name local:remote ..." per target
		wantErr string
	}{
		{name: "one target", args: []string{"svc/web", "8080:80"}, want: []string{"svc/web 8080:80"}},
		{name: "several ports", args: []string{"svc/web", "8080:80", ":443", "http"}, want: []string{"svc/web 8080:80 0:443 0:http"}},
		{name: "several targets", args: []string{"svc/web", "8080:80", "deploy/api", "9090", "pod/db-0", ":5432"},
			want: []string{"svc/web 8080:80", "deploy/api 9090:9090", "pod/db-0 0:5432"}},
		{name: "no args", args: nil, wantErr: "no TARGET given"},
		{name: "port first", args: []string{"8080:80", "svc/web"}, wantErr: `"8080:80" is not a TARGET`},
		{name: "target without ports", args: []string{"svc/web"}, wantErr: "svc/web has no ports"},
		{name: "second target without ports", args: []string{"svc/web", "80", "deploy/api"}, wantErr: "deploy/api has no ports"},
		{name: "bad port", args: []string{"svc/web", "80:x:y"}, wantErr: "invalid port"},
		{name: "bad target", args: []string{"cm/x", "80"}, wantErr: "unknown kind"},
		{name: "same local twice", args: []string{"svc/a", "8080:80", "svc/b", "8080:81"}, wantErr: "local port 8080 is given twice"},
		{name: "free ports may repeat", args: []string{"svc/a", ":80", "svc/b", ":80"}, want: []string{"svc/a 0:80", "svc/b 0:80"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseArgs(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseArgs(%q) error = %v, want one containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseArgs(%q): %v", tt.args, err)
			}
			var short []string
			for _, ts := range got {
				s := ts.String()
				for _, p := range ts.Ports {
					s += fmt.Sprintf(" %d:%s", p.Local, p.Remote.String())
				}
				short = append(short, s)
			}
			if !reflect.DeepEqual(short, tt.want) {
				t.Fatalf("ParseArgs(%q) = %q, want %q", tt.args, short, tt.want)
			}
		})
	}
}

func FuzzParsePort(f *testing.F) {
	for _, s := range []string{"8080:80", "80", ":80", "http", "a:b:c", "", ":", "0:0", "99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePort(s)
		if err != nil {
			return
		}
		if p.Remote.Type == intstr.Int && (p.Remote.IntVal < 1 || p.Remote.IntVal > 65535) {
			t.Fatalf("ParsePort(%q) accepted remote %d", s, p.Remote.IntVal)
		}
		if p.Remote.Type == intstr.String && p.Remote.StrVal == "" {
			t.Fatalf("ParsePort(%q) accepted an empty remote name", s)
		}
	})
}
