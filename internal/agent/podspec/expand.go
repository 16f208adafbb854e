package podspec

import "strings"

// Expand replaces $(VAR) references in s as Kubernetes does for command,
// args and env values: $(NAME) becomes the value lookup finds for NAME, a
// reference lookup does not know stays as written, "$$" is an escaped "$",
// and a "$" that starts no reference (including an unterminated "$(") is
// kept literally.
func Expand(s string, lookup func(name string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		switch next := s[i+1]; next {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				// Unterminated: "$(" is literal and scanning goes on after it.
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
			b.WriteByte(next)
			i++
		}
	}
	return b.String()
}

// mapLookup looks names up in maps, first match wins.
func mapLookup(maps ...map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		for _, m := range maps {
			if v, ok := m[name]; ok {
				return v, true
			}
		}
		return "", false
	}
}

// ExpandCommandAndArgs expands $(VAR) references in command and args with
// the container's resolved environment, as the kubelet does before it hands
// them to the runtime.
func ExpandCommandAndArgs(command, args []string, env map[string]string) ([]string, []string) {
	lookup := mapLookup(env)
	expand := func(in []string) []string {
		if in == nil {
			return nil
		}
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = Expand(s, lookup)
		}
		return out
	}
	return expand(command), expand(args)
}
