package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// readmeRow is one row of the README's settings table.
type readmeRow struct {
	line                       int
	name, flag, meaning, deflt string
}

// readmeSettings reads the table of the README's "## Configuration"
// section: | `NAME` | `-flag` | meaning | default |.
func readmeSettings(t *testing.T, path string) []readmeRow {
	t.Helper()
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	start := -1
	for i, l := range lines {
		if l == "## Configuration" {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("%s has no section \"## Configuration\"", path)
	}
	var rows []readmeRow
	header := false
	for i := start + 1; i < len(lines) && !strings.HasPrefix(lines[i], "## "); i++ {
		l := lines[i]
		if !strings.HasPrefix(l, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), " | ")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		switch {
		case !header:
			if strings.Join(cells, "|") != "variable|flag|meaning|default" {
				t.Fatalf("%s:%d: the settings table's header is %q, want | variable | flag | meaning | default |", path, i+1, l)
			}
			header = true
			continue
		case strings.HasPrefix(cells[0], "---"):
			continue
		case len(cells) != 4:
			t.Fatalf("%s:%d: %d cells, want 4 (variable, flag, meaning, default): %q", path, i+1, len(cells), l)
		}
		rows = append(rows, readmeRow{i + 1, cells[0], cells[1], cells[2], cells[3]})
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no settings table under \"## Configuration\"", path)
	}
	return rows
}

// TestREADMESettingsTable: the README's settings table has one row per
// setting of the table here, with its flag and its default, so that what
// users read is what the service does.
func TestREADMESettingsTable(t *testing.T) {
	const path = "../../README.md"
	code := regexp.MustCompile("^`([^`]+)`")
	seen := map[string]bool{}
	for _, row := range readmeSettings(t, path) {
		m := code.FindStringSubmatch(row.name)
		if m == nil || m[0] != row.name {
			t.Errorf("%s:%d: variable cell %q is not one `NAME`", path, row.line, row.name)
			continue
		}
		st := lookup(m[1])
		if st == nil {
			t.Errorf("%s:%d: %s is no setting of shared/config", path, row.line, m[1])
			continue
		}
		if seen[st.name] {
			t.Errorf("%s:%d: %s has two rows", path, row.line, st.name)
		}
		seen[st.name] = true
		if st.flag != "" && row.flag != "`-"+st.flag+"`" {
			t.Errorf("%s:%d: %s's flag cell is %q, want `-%s`", path, row.line, st.name, row.flag, st.flag)
		}
		if st.flag == "" && strings.Contains(row.flag, "`-") {
			t.Errorf("%s:%d: %s has no flag (environment only), the README gives it %s", path, row.line, st.name, row.flag)
		}
		if st.def == "" {
			if !strings.HasPrefix(row.deflt, "unset") {
				t.Errorf("%s:%d: %s is unset by default, the README says %q", path, row.line, st.name, row.deflt)
			}
		} else if d := code.FindStringSubmatch(row.deflt); d == nil || d[1] != st.def {
			t.Errorf("%s:%d: %s's default is `%s`, the README says %q", path, row.line, st.name, st.def, row.deflt)
		}
		if row.meaning == "" {
			t.Errorf("%s:%d: %s has no meaning", path, row.line, st.name)
		}
	}
	for _, st := range table {
		if !seen[st.name] {
			t.Errorf("%s: the settings table has no row for %s", path, st.name)
		}
	}
}
