package podspec

import (
	"slices"
	"testing"
)

func TestExpand(t *testing.T) {
	vars := map[string]string{"VAR_A": "A", "VAR_B": "B", "EMPTY": "", "A$B": "weird"}
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"plain", "plain"},
		{"$(VAR_A)", "A"},
		{"$(VAR_A)$(VAR_B)", "AB"},
		{"x$(VAR_A)y", "xAy"},
		{"$(EMPTY)", ""},
		{"$(UNDEFINED)", "$(UNDEFINED)"},
		{"$(VAR_A) $(UNDEFINED) $(VAR_B)", "A $(UNDEFINED) B"},
		{"$$(VAR_A)", "$(VAR_A)"},
		{"$$$(VAR_A)", "$A"},
		{"$$$$(VAR_A)", "$$(VAR_A)"},
		{"$$", "$"},
		{"$", "$"},
		{"a$", "a$"},
		{"$VAR_A", "$VAR_A"},
		{"${VAR_A}", "${VAR_A}"},
		{"$(VAR_A", "$(VAR_A"},
		{"$(", "$("},
		{"$()", "$()"},
		{"$(VAR_A)$(", "A$("},
		{"$($(VAR_A))", "$($(VAR_A))"}, // the name is "$(VAR_A", undefined
		{"$(A$B)", "weird"},
		{"100$", "100$"},
		{"echo $(VAR_A) $$HOME", "echo A $HOME"},
		{"é$(VAR_A)ü", "éAü"},
	}
	for _, tt := range tests {
		got := Expand(tt.in, mapLookup(vars))
		if got != tt.want {
			t.Errorf("Expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestExpandCommandAndArgs(t *testing.T) {
	env := map[string]string{"GREETING": "hello", "NAME": "berth"}
	tests := []struct {
		name             string
		command, args    []string
		wantCmd, wantArg []string
	}{
		{name: "nil stays nil"},
		{
			name:    "command and args",
			command: []string{"/bin/echo", "$(GREETING)"}, args: []string{"$(NAME)", "$(MISSING)", "$$(NAME)"},
			wantCmd: []string{"/bin/echo", "hello"}, wantArg: []string{"berth", "$(MISSING)", "$(NAME)"},
		},
		{
			name: "args only", args: []string{"$(GREETING) $(NAME)"},
			wantArg: []string{"hello berth"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, args := ExpandCommandAndArgs(tt.command, tt.args, env)
			if !slices.Equal(cmd, tt.wantCmd) || (cmd == nil) != (tt.wantCmd == nil) {
				t.Errorf("command = %q, want %q", cmd, tt.wantCmd)
			}
			if !slices.Equal(args, tt.wantArg) || (args == nil) != (tt.wantArg == nil) {
				t.Errorf("args = %q, want %q", args, tt.wantArg)
			}
		})
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{"$(A)", "$$", "$(", "a$b$(c)$$(d)", "$"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// With nothing defined, expansion only unescapes "$$".
		got := Expand(s, mapLookup())
		if len(got) > len(s) {
			t.Fatalf("Expand(%q) = %q grew without variables", s, got)
		}
		// Everything defined as itself-wrapped is a fixed point.
		same := Expand(s, func(name string) (string, bool) { return "$(" + name + ")", true })
		if same != Expand(s, mapLookup()) {
			t.Fatalf("identity mapping changed %q: %q", s, same)
		}
	})
}
