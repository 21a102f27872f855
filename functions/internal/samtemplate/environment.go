package samtemplate

import (
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/shared/config"
)

// Environment reads template.yaml at path and returns, for each function
// resource, the environment variables it sets (Globals' and its own) for a
// deploy that takes every parameter's default: a "!Ref Parameter" is the
// parameter's default, a "!Join [",", !Ref Parameter]" the default of that
// list. A variable set any other way (an !If, a !Sub) is left out: its value
// depends on more than a default.
//
// It reads the template's block style line by line, as template.yaml is
// written, rather than bring in a YAML library for one check; a template it
// cannot follow gives variables it does not list, which the callers' checks
// of the variables they expect catch.
func Environment(path string) (map[string]map[string]string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	defaults := map[string]string{}
	global := map[string]string{}         // variable -> parameter or literal, from Globals
	own := map[string]map[string]string{} // resource -> variable -> parameter or literal
	var stack []entry
	skipBelow := -1 // inside a folded or literal scalar: lines indented more than this
	for _, line := range strings.Split(string(src), "\n") {
		indent := len(line) - len(strings.TrimLeft(line, " "))
		text := strings.TrimSpace(line)
		if skipBelow >= 0 {
			if text == "" || indent > skipBelow {
				continue
			}
			skipBelow = -1
		}
		if text == "" || strings.HasPrefix(text, "#") || strings.HasPrefix(text, "- ") {
			continue
		}
		m := keyLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		key, value := m[2], uncomment(strings.TrimSpace(m[3]))
		for len(stack) > 0 && stack[len(stack)-1].indent >= indent {
			stack = stack[:len(stack)-1]
		}
		stack = append(stack, entry{indent, key})
		if value == ">-" || value == ">" || value == "|" || value == "|-" {
			skipBelow = indent
			continue
		}
		path := make([]string, len(stack))
		for i, e := range stack {
			path[i] = e.key
		}
		switch {
		case len(path) == 3 && path[0] == "Parameters" && path[2] == "Default":
			defaults[path[1]] = unquote(value)
		case len(path) == 5 && path[0] == "Globals" && path[1] == "Function" && path[2] == "Environment" && path[3] == "Variables":
			global[path[4]] = value
		case len(path) == 6 && path[0] == "Resources" && path[2] == "Properties" && path[3] == "Environment" && path[4] == "Variables":
			if own[path[1]] == nil {
				own[path[1]] = map[string]string{}
			}
			own[path[1]][path[5]] = value
		case len(path) == 3 && path[0] == "Resources" && path[2] == "Type" && value == "AWS::Serverless::Function":
			if own[path[1]] == nil {
				own[path[1]] = map[string]string{}
			}
		}
	}
	resolve := func(v string) (string, bool) {
		if m := ref.FindStringSubmatch(v); m != nil {
			d, ok := defaults[m[1]]
			return d, ok
		}
		if m := joinRef.FindStringSubmatch(v); m != nil {
			d, ok := defaults[m[1]]
			return d, ok
		}
		if strings.HasPrefix(v, "!") {
			return "", false
		}
		return unquote(v), true
	}
	out := map[string]map[string]string{}
	for res, vars := range own {
		env := map[string]string{}
		for _, from := range []map[string]string{global, vars} {
			for k, v := range from {
				if r, ok := resolve(v); ok {
					env[k] = r
				} else {
					delete(env, k)
				}
			}
		}
		out[res] = env
	}
	if len(defaults) == 0 || len(out) == 0 {
		return nil, fmt.Errorf("%s: found %d parameters and %d functions: not a template this reader follows", path, len(defaults), len(out))
	}
	return out, nil
}

type entry struct {
	indent int
	key    string
}

var (
	keyLine = regexp.MustCompile(`^( *)([A-Za-z0-9_:.-]*[A-Za-z0-9_]):(?:\s+(.*))?$`)
	ref     = regexp.MustCompile(`^!Ref ([A-Za-z0-9]+)$`)
	joinRef = regexp.MustCompile(`^!Join \[",", !Ref ([A-Za-z0-9]+)\]$`)
)

// uncomment drops a trailing comment from a value.
func uncomment(v string) string {
	if strings.HasPrefix(v, `"`) || strings.HasPrefix(v, `'`) {
		if end := strings.IndexByte(v[1:], v[0]); end >= 0 {
			return v[:end+2] // the quoted scalar; what follows it is a comment
		}
		return v
	}
	if i := strings.Index(v, " #"); i >= 0 {
		return strings.TrimSpace(v[:i])
	}
	return v
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
		return v[1 : len(v)-1]
	}
	return v
}

// CheckDefaults fails t unless every setting template.yaml (at path) gives
// the named function resources, under default parameters, means what the
// function takes with nothing set: the settings table's defaults with the
// function's own overrides. want lists settings each resource must set (so
// that a template this reader misreads fails rather than passes);
// deliberate names, by resource, the settings the template sets otherwise
// on purpose, each with why; they must still be set and valid.
func CheckDefaults(t testing.TB, path string, resources, want []string, deliberate map[string]map[string]string, overrides ...config.Override) {
	t.Helper()
	envs, err := Environment(path)
	if err != nil {
		t.Fatal(err)
	}
	none := func(string) string { return "" }
	base, err := config.FromEnv(none, overrides...)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]bool{}
	for _, name := range config.Names() {
		settings[name] = true
	}
	for _, res := range resources {
		env, ok := envs[res]
		if !ok {
			t.Errorf("%s has no function %s", path, res)
			continue
		}
		for _, name := range want {
			if _, ok := env[name]; !ok {
				t.Errorf("%s: %s's environment has no %s", path, res, name)
			}
		}
		for name, v := range env {
			if !settings[name] {
				continue // not a setting (a secret's reference)
			}
			got, err := config.FromEnv(func(k string) string {
				if k == name {
					return v
				}
				return ""
			}, overrides...)
			if err != nil {
				t.Errorf("%s: %s gets %s=%q by default, which it refuses: %v", path, res, name, v, err)
				continue
			}
			if _, ok := deliberate[res][name]; ok {
				continue
			}
			if !reflect.DeepEqual(got, base) {
				t.Errorf("%s: %s gets %s=%q by default, not the function's own default: change the parameter's Default or the settings table (shared/config)", path, res, name, v)
			}
		}
		for name, why := range deliberate[res] {
			if why == "" {
				t.Errorf("%s's %s differs on purpose, but the check is not told why", res, name)
			}
			if _, ok := env[name]; !ok {
				t.Errorf("%s: %s no longer sets %s, which the check lets differ on purpose: drop it from the list", path, res, name)
			}
		}
	}
}
