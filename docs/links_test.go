// Package docs holds the project's documentation; its test keeps every
// relative link and image in the repository's Markdown files pointing at a
// file (and a heading) that exists, inside the repository.
package docs

import (
	"bufio"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// skipDirs are folders of build output and tools, never documentation.
var skipDirs = []string{"bin", "dist", "node_modules", "test-artifacts"}

func TestLinksResolve(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no repository root above docs/: %v", err)
	}
	files := markdownFiles(t, root)
	if !slices.Contains(files, "README.md") || len(files) < 5 {
		t.Fatalf("found only %v: the walk is broken", files)
	}
	anchors := map[string][]string{} // per Markdown file, its headings' anchors
	checked := 0
	for _, file := range files {
		body, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		if m := outside.FindString(string(body)); m != "" {
			t.Errorf("%s names %q: the docs must not send readers outside the repository (the API reference is docs/openapi.yaml)", file, m)
		}
		for _, l := range links(string(body)) {
			if scheme.MatchString(l.target) {
				continue // the web: not checked here (no network in tests)
			}
			target, fragment, _ := strings.Cut(l.target, "#")
			target, err := url.PathUnescape(target)
			if err != nil {
				t.Errorf("%s:%d: %q: %v", file, l.line, l.target, err)
				continue
			}
			rel := file // a bare #fragment is this file
			if target != "" {
				if strings.HasPrefix(target, "/") {
					rel = path.Clean(strings.TrimPrefix(target, "/"))
				} else {
					rel = path.Join(path.Dir(file), target)
				}
			}
			if rel == ".." || strings.HasPrefix(rel, "../") {
				t.Errorf("%s:%d: %q leaves the repository", file, l.line, l.target)
				continue
			}
			checked++
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(rel))); err != nil {
				t.Errorf("%s:%d: %q: no %s", file, l.line, l.target, rel)
				continue
			}
			if fragment == "" || !strings.HasSuffix(rel, ".md") {
				continue
			}
			if _, ok := anchors[rel]; !ok {
				b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(rel)))
				if err != nil {
					t.Fatal(err)
				}
				anchors[rel] = headingAnchors(string(b))
			}
			if !slices.Contains(anchors[rel], strings.ToLower(fragment)) {
				t.Errorf("%s:%d: %q: %s has no heading #%s (it has %v)", file, l.line, l.target, rel, fragment, anchors[rel])
			}
		}
	}
	if checked == 0 {
		t.Fatal("no relative links found: the parser is broken")
	}
}

var (
	scheme  = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
	outside = regexp.MustCompile(`\.\./shared/|CONTRACT\.md`)
	// [text](target "title") and ![alt](target); the text may hold one
	// level of brackets.
	inline = regexp.MustCompile(`!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^()\s<>]+)>?(?:\s+"[^"]*")?\s*\)`)
	// [label]: target
	reference = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$`)
	codeSpan  = regexp.MustCompile("`+[^`]*`+")
	fence     = regexp.MustCompile("^\\s{0,3}(```|~~~)")
)

func markdownFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != root && (strings.HasPrefix(d.Name(), ".") || slices.Contains(skipDirs, d.Name())) {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".md") {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

type link struct {
	line   int
	target string
}

// links returns the link and image targets of a Markdown text, outside
// fenced code blocks and code spans.
func links(md string) []link {
	var out []link
	inFence := ""
	sc := bufio.NewScanner(strings.NewReader(md))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if m := fence.FindStringSubmatch(line); m != nil {
			switch inFence {
			case "":
				inFence = m[1]
			case m[1]:
				inFence = ""
			}
			continue
		}
		if inFence != "" {
			continue
		}
		line = codeSpan.ReplaceAllString(line, "``")
		for _, m := range inline.FindAllStringSubmatch(line, -1) {
			out = append(out, link{n, m[1]})
		}
		if m := reference.FindStringSubmatch(line); m != nil {
			out = append(out, link{n, m[1]})
		}
	}
	return out
}

// headingAnchors returns the anchors GitHub gives a Markdown text's
// headings: lower case, punctuation dropped, spaces to hyphens, a repeated
// one numbered -1, -2, ...
func headingAnchors(md string) []string {
	var out []string
	seen := map[string]int{}
	inFence := ""
	for line := range strings.SplitSeq(md, "\n") {
		if m := fence.FindStringSubmatch(line); m != nil {
			switch inFence {
			case "":
				inFence = m[1]
			case m[1]:
				inFence = ""
			}
			continue
		}
		if inFence != "" || !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimLeft(line, "#")
		if text != "" && text[0] != ' ' {
			continue // #hashtag, not a heading
		}
		a := slug(text)
		if k := seen[a]; k > 0 {
			out = append(out, fmt.Sprintf("%s-%d", a, k))
		} else {
			out = append(out, a)
		}
		seen[a]++
	}
	return out
}

var linkText = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)

func slug(heading string) string {
	heading = linkText.ReplaceAllString(strings.TrimSpace(heading), "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Mn, r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestSlug(t *testing.T) {
	for _, c := range []struct{ heading, want string }{
		{"Design", "design"},
		{"Rolling restarts and a crash behind nginx (`make loadtest-rolling`)", "rolling-restarts-and-a-crash-behind-nginx-make-loadtest-rolling"},
		{"Where the memory and the time go (pprof)", "where-the-memory-and-the-time-go-pprof"},
		{"Which path: `internet` or `vpc`", "which-path-internet-or-vpc"},
		{"2026-12-01: streams without goroutines (issue 12)", "2026-12-01-streams-without-goroutines-issue-12"},
		{"Many instances on one Redis (before registered sockets)", "many-instances-on-one-redis-before-registered-sockets"},
		{"See [the guide](x.md) now", "see-the-guide-now"},
		{"snake_case and Ünïcode", "snake_case-and-ünïcode"},
	} {
		if got := slug(c.heading); got != c.want {
			t.Errorf("slug(%q) = %q, want %q", c.heading, got, c.want)
		}
	}
	got := headingAnchors("# A\n## B\n```\n# not a heading\n```\n## B\n#tag\n")
	if want := []string{"a", "b", "b-1"}; !slices.Equal(got, want) {
		t.Errorf("headingAnchors = %v, want %v", got, want)
	}
}

func TestLinks(t *testing.T) {
	md := "See [the README](../README.md#design) and ![chart](a/b.svg \"title\").\n" +
		"`[not](a-link.md)` and [`code` text](c.md).\n" +
		"```sh\n[in](fence.md)\n```\n" +
		"[ref]: ./d.md\n" +
		"[web](https://example.com) and [nested [x]](e.md)\n"
	var got []string
	for _, l := range links(md) {
		got = append(got, fmt.Sprintf("%d:%s", l.line, l.target))
	}
	want := []string{"1:../README.md#design", "1:a/b.svg", "2:c.md", "6:./d.md", "7:https://example.com", "7:e.md"}
	if !slices.Equal(got, want) {
		t.Errorf("links = %v, want %v", got, want)
	}
}
