package ecs

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// A CloudFormation template resolved for one set of parameter values, as
// CloudFormation would: conditions, Fn::If, Refs to parameters and pseudo
// parameters, AWS::NoValue, Fn::FindInMap, Fn::Sub, Fn::Select, Fn::Split,
// Fn::Join. Refs to resources and Fn::GetAtt stay as they are, so that
// tests can follow them. Scalars stay strings, as CloudFormation has them.

type template struct {
	Parameters map[string]parameter
	Resources  map[string]resource
	Outputs    map[string]any
}

type parameter struct {
	Type, Default, AllowedPattern string
	MinValue, MaxValue            string
	AllowedValues                 []string
	NoEcho                        string
	HasDefault                    bool
}

type resource struct {
	Type       string
	Properties map[string]any
}

var pseudo = map[string]any{
	"AWS::Region":    "eu-west-1",
	"AWS::AccountId": "123456789012",
	"AWS::Partition": "aws",
	"AWS::StackName": "orderstream",
	"AWS::URLSuffix": "amazonaws.com",
}

// noValue marks what AWS::NoValue removes.
type noValue struct{}

// parseYAML reads a template, turning the short forms (!Ref, !Sub, ...)
// into their long ones.
func parseYAML(src []byte) (map[string]any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, err
	}
	v, err := fromNode(doc.Content[0])
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the template is no mapping")
	}
	return m, nil
}

func fromNode(n *yaml.Node) (any, error) {
	var v any
	switch n.Kind {
	case yaml.ScalarNode:
		v = n.Value
	case yaml.SequenceNode:
		l := []any{}
		for _, c := range n.Content {
			x, err := fromNode(c)
			if err != nil {
				return nil, err
			}
			l = append(l, x)
		}
		v = l
	case yaml.MappingNode:
		m := map[string]any{}
		for i := 0; i < len(n.Content); i += 2 {
			x, err := fromNode(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			if _, dup := m[n.Content[i].Value]; dup {
				return nil, fmt.Errorf("line %d: key %s twice", n.Content[i].Line, n.Content[i].Value)
			}
			m[n.Content[i].Value] = x
		}
		v = m
	case yaml.AliasNode:
		return fromNode(n.Alias)
	default:
		return nil, fmt.Errorf("line %d: unexpected YAML node", n.Line)
	}
	tag, ok := strings.CutPrefix(n.Tag, "!")
	if !ok || strings.HasPrefix(tag, "!") {
		return v, nil
	}
	switch tag {
	case "Ref", "Condition":
		return map[string]any{tag: v}, nil
	case "GetAtt":
		if s, ok := v.(string); ok {
			name, attr, _ := strings.Cut(s, ".")
			v = []any{name, attr}
		}
	}
	return map[string]any{"Fn::" + tag: v}, nil
}

func loadTemplate(t *testing.T, path string, overrides map[string]any) template {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := parseYAML(src)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	r := &resolver{raw: raw, values: map[string]any{}, conds: map[string]bool{}}
	out := template{Parameters: map[string]parameter{}, Resources: map[string]resource{}, Outputs: map[string]any{}}
	params, _ := raw["Parameters"].(map[string]any)
	for name, p := range params {
		pm := p.(map[string]any)
		str := func(k string) string { s, _ := pm[k].(string); return s }
		par := parameter{Type: str("Type"), Default: str("Default"), AllowedPattern: str("AllowedPattern"),
			MinValue: str("MinValue"), MaxValue: str("MaxValue"), NoEcho: str("NoEcho")}
		_, par.HasDefault = pm["Default"]
		if av, ok := pm["AllowedValues"].([]any); ok {
			for _, a := range av {
				par.AllowedValues = append(par.AllowedValues, a.(string))
			}
		}
		out.Parameters[name] = par
		val, given := overrides[name]
		if !given {
			if !par.HasDefault {
				t.Fatalf("parameter %s has no default and the test gives no value", name)
			}
			val = par.Default
		}
		if s, ok := val.(string); ok && (strings.HasPrefix(par.Type, "List<") || par.Type == "CommaDelimitedList") {
			val = splitList(s)
		}
		r.values[name] = val
	}
	for k := range overrides {
		if _, ok := params[k]; !ok {
			t.Fatalf("the test sets %s, which the template does not have", k)
		}
	}
	for k, v := range pseudo {
		r.values[k] = v
	}
	resources, _ := raw["Resources"].(map[string]any)
	for name, res := range resources {
		rm := res.(map[string]any)
		if c, ok := rm["Condition"].(string); ok && !r.cond(t, c) {
			continue
		}
		props, _ := r.resolve(t, rm["Properties"]).(map[string]any)
		out.Resources[name] = resource{Type: rm["Type"].(string), Properties: props}
	}
	outputs, _ := raw["Outputs"].(map[string]any)
	for name, o := range outputs {
		om := o.(map[string]any)
		if c, ok := om["Condition"].(string); ok && !r.cond(t, c) {
			continue
		}
		out.Outputs[name] = r.resolve(t, om["Value"])
	}
	return out
}

func splitList(s string) []any {
	var l []any
	for _, x := range strings.Split(s, ",") {
		l = append(l, x)
	}
	return l
}

type resolver struct {
	raw    map[string]any
	values map[string]any
	conds  map[string]bool
}

func (r *resolver) cond(t *testing.T, name string) bool {
	t.Helper()
	if v, ok := r.conds[name]; ok {
		return v
	}
	conds, _ := r.raw["Conditions"].(map[string]any)
	c, ok := conds[name]
	if !ok {
		t.Fatalf("no condition %s", name)
	}
	b, ok := r.resolve(t, c).(bool)
	if !ok {
		t.Fatalf("condition %s does not resolve to a boolean", name)
	}
	r.conds[name] = b
	return b
}

var subVar = regexp.MustCompile(`\$\{([^}!]+)\}`)

func (r *resolver) resolve(t *testing.T, node any) any {
	t.Helper()
	switch n := node.(type) {
	case []any:
		l := []any{}
		for _, x := range n {
			if v := r.resolve(t, x); v != (noValue{}) {
				l = append(l, v)
			}
		}
		return l
	case map[string]any:
		if len(n) == 1 {
			for k, v := range n {
				if res, ok := r.intrinsic(t, k, v); ok {
					return res
				}
			}
		}
		m := map[string]any{}
		for k, v := range n {
			if x := r.resolve(t, v); x != (noValue{}) {
				m[k] = x
			}
		}
		return m
	}
	return node
}

func (r *resolver) intrinsic(t *testing.T, fn string, arg any) (any, bool) {
	t.Helper()
	args, _ := arg.([]any)
	str := func(v any) string { s, _ := r.resolve(t, v).(string); return s }
	switch fn {
	case "Ref":
		name := arg.(string)
		if name == "AWS::NoValue" {
			return noValue{}, true
		}
		if v, ok := r.values[name]; ok {
			return v, true
		}
		return map[string]any{"Ref": name}, true // a resource
	case "Condition":
		return r.cond(t, arg.(string)), true
	case "Fn::If":
		if r.cond(t, args[0].(string)) {
			return r.resolve(t, args[1]), true
		}
		return r.resolve(t, args[2]), true
	case "Fn::Equals":
		return fmt.Sprint(r.resolve(t, args[0])) == fmt.Sprint(r.resolve(t, args[1])), true
	case "Fn::Not":
		b, _ := r.resolve(t, args[0]).(bool)
		return !b, true
	case "Fn::And", "Fn::Or":
		all, any := true, false
		for _, a := range args {
			b, _ := r.resolve(t, a).(bool)
			all, any = all && b, any || b
		}
		return map[bool]bool{true: all, false: any}[fn == "Fn::And"], true
	case "Fn::FindInMap":
		maps, _ := r.raw["Mappings"].(map[string]any)
		m, _ := maps[str(args[0])].(map[string]any)
		k1, _ := m[str(args[1])].(map[string]any)
		v, ok := k1[str(args[2])]
		if !ok {
			t.Fatalf("Fn::FindInMap %v: no such entry", args)
		}
		return v, true
	case "Fn::Sub":
		s, ok := arg.(string)
		if !ok {
			return nil, false
		}
		left := false
		out := subVar.ReplaceAllStringFunc(s, func(ref string) string {
			name := ref[2 : len(ref)-1]
			if v, ok := r.values[name].(string); ok {
				return v
			}
			left = true
			return ref
		})
		if left {
			return map[string]any{"Fn::Sub": out}, true
		}
		return out, true
	case "Fn::Select":
		l, ok := r.resolve(t, args[1]).([]any)
		if !ok {
			return nil, false
		}
		var i int
		fmt.Sscan(str(args[0]), &i)
		return l[i], true
	case "Fn::Split":
		s, ok := r.resolve(t, args[1]).(string)
		if !ok {
			return nil, false
		}
		var l []any
		for _, x := range strings.Split(s, str(args[0])) {
			l = append(l, x)
		}
		return l, true
	case "Fn::Join":
		l, ok := r.resolve(t, args[1]).([]any)
		if !ok {
			return nil, false
		}
		parts := make([]string, len(l))
		for i, x := range l {
			if parts[i], ok = x.(string); !ok {
				return nil, false
			}
		}
		return strings.Join(parts, str(args[0])), true
	}
	return nil, false
}

// TestResolver: the resolver itself, on the forms the template uses.
func TestResolver(t *testing.T) {
	src := []byte(`
Parameters:
  P: {Type: String, Default: "a:b"}
  L: {Type: CommaDelimitedList, Default: "x,y"}
  N: {Type: String, Default: ""}
Mappings:
  M: {a:b: {K: v}}
Conditions:
  PIsSet: !Not [!Equals [!Ref P, ""]]
  Both: !And [!Condition PIsSet, !Equals [!Select [1, !Split [":", !Ref P]], b]]
  NIsSet: !Not [!Equals [!Ref N, ""]]
Resources:
  R:
    Type: T
    Properties:
      Sub: !Sub "p=${P} r=${AWS::Region} x=${Other.Arn}"
      If: !If [Both, yes, no]
      Gone: !If [NIsSet, kept, !Ref AWS::NoValue]
      List: [!If [NIsSet, kept, !Ref AWS::NoValue], !Select [0, !Ref L]]
      Map: !FindInMap [M, !Ref P, K]
      Att: !GetAtt Other.Arn
      Join: !Join ["-", !Ref L]
  Skipped:
    Type: T
    Condition: NIsSet
`)
	dir := t.TempDir()
	path := dir + "/t.yaml"
	os.WriteFile(path, src, 0o644)
	tpl := loadTemplate(t, path, nil)
	p := tpl.Resources["R"].Properties
	want := map[string]string{
		"Sub":  "map[Fn::Sub:p=a:b r=eu-west-1 x=${Other.Arn}]",
		"If":   "yes",
		"List": "[x]",
		"Map":  "v",
		"Att":  "map[Fn::GetAtt:[Other Arn]]",
		"Join": "x-y",
	}
	for k, w := range want {
		if got := fmt.Sprint(p[k]); got != w {
			t.Errorf("%s = %s, want %s", k, got, w)
		}
	}
	if _, ok := p["Gone"]; ok {
		t.Errorf("AWS::NoValue left Gone in place")
	}
	if _, ok := tpl.Resources["Skipped"]; ok {
		t.Errorf("a resource whose condition is false is in the result")
	}
}
