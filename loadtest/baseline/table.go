package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// table turns a figures run's JSON (run.sh figures: hold.<server>.json and
// rounds-<k>x<m>-<interval>.<server>.json, one per server and run) into one
// table, figures.md, and the same rows as figures.json: each figure for
// orderstream and every raw form, the best raw form and orderstream's ratio
// to it.
func table(args []string) error {
	fset := flag.NewFlagSet("table", flag.ContinueOnError)
	in := fset.String("in", "", "the results folder of run.sh figures")
	note := fset.String("note", "", "a line to print under the title (for instance: small sizes, not to be quoted)")
	if err := fset.Parse(args); err != nil {
		return err
	}
	if *in == "" {
		return errors.New("give -in, the results folder of run.sh figures")
	}
	t, err := readFigures(*in)
	if err != nil {
		return err
	}
	t.Note = *note
	if b, err := os.ReadFile(filepath.Join(*in, "pinning.txt")); err == nil {
		t.Pinning = strings.TrimSpace(string(b))
	}
	md := t.markdown()
	fmt.Print(md)
	if err := os.WriteFile(filepath.Join(*in, "figures.md"), []byte(md), 0o644); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(t, "", "  ")
	if err := os.WriteFile(filepath.Join(*in, "figures.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if len(t.Problems) > 0 {
		return fmt.Errorf("%d runs lost events, failed or are missing: see figures.md", len(t.Problems))
	}
	return nil
}

// figures is the table of a run.
type figures struct {
	Note    string   `json:"note,omitempty"`
	Pinning string   `json:"pinning,omitempty"`
	Servers []string `json:"servers"`
	Rows    []row    `json:"rows"`
	// Box is each run's load average before it, and the cores.
	Cores    int               `json:"cores"`
	Load     map[string]string `json:"loadAverageBefore"`
	Problems []string          `json:"problems"`
}

// row is one figure for every server. Values are in Unit; a missing one
// is absent from Values.
type row struct {
	Figure       string             `json:"figure"`
	Unit         string             `json:"unit"`
	HigherBetter bool               `json:"higherIsBetter"`
	Run          string             `json:"run"`
	Values       map[string]float64 `json:"values"`
	BestRaw      string             `json:"bestRaw,omitempty"`
	// Ratio is orderstream's value over the best raw form's.
	Ratio float64 `json:"ratio,omitempty"`
}

// holdRun is what `baseline bench -hold -json` writes, one per server.
type holdRun struct {
	Name         string     `json:"name"`
	Streams      int        `json:"streams"`
	Held         int        `json:"held"`
	Memory       []memPoint `json:"memory"`
	KiBPerStream float64    `json:"kibPerStream"`
	Box          box        `json:"box"`
}

// serverOrder is the columns' order; other raw names follow, sorted.
var serverOrder = []string{"orderstream", "raw-goroutine", "raw-writev", "raw-loop"}

func readFigures(in string) (*figures, error) {
	t := &figures{Load: map[string]string{}}
	seen := map[string]bool{}
	holds := map[string]holdRun{}
	rounds := map[string]map[string]summary{} // run -> server -> summary
	files, err := filepath.Glob(filepath.Join(in, "*.json"))
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".json")
		run, _, ok := strings.Cut(base, ".")
		if !ok || (run != "hold" && !strings.HasPrefix(run, "rounds-")) {
			continue // not a run's summary (figures.json, k6 summaries)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		if run == "hold" {
			var hs []holdRun
			if err := json.Unmarshal(b, &hs); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			for _, h := range hs {
				seen[h.Name] = true
				holds[h.Name] = h
				t.Load["hold."+h.Name] = h.Box.LoadBefore
				t.Cores = max(t.Cores, h.Box.Cores)
				if h.Held != h.Streams {
					t.Problems = append(t.Problems, fmt.Sprintf("hold.%s: held %d of %d streams", h.Name, h.Held, h.Streams))
				}
			}
			continue
		}
		var m map[string]summary
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for name, s := range m {
			seen[name] = true
			if rounds[run] == nil {
				rounds[run] = map[string]summary{}
			}
			rounds[run][name] = s
			t.Load[run+"."+name] = s.Box.LoadBefore
			t.Cores = max(t.Cores, s.Box.Cores)
			if s.Delivered != s.Expected || s.Ended != s.N*s.Rounds || s.Gaps+s.Duplicates+s.Errors > 0 {
				t.Problems = append(t.Problems, fmt.Sprintf("%s.%s: %d of %d delivered, %d of %d streams ended by the server, %d gaps, %d duplicates, %d errors",
					run, name, s.Delivered, s.Expected, s.Ended, s.N*s.Rounds, s.Gaps, s.Duplicates, s.Errors))
			}
		}
	}
	if len(holds) == 0 && len(rounds) == 0 {
		return nil, fmt.Errorf("no hold.*.json or rounds-*.json in %s: %w", in, fs.ErrNotExist)
	}
	for s := range seen {
		t.Servers = append(t.Servers, s)
	}
	slices.SortFunc(t.Servers, func(a, b string) int {
		ia, ib := slices.Index(serverOrder, a), slices.Index(serverOrder, b)
		if ia < 0 {
			ia = len(serverOrder)
		}
		if ib < 0 {
			ib = len(serverOrder)
		}
		return cmp.Or(cmp.Compare(ia, ib), strings.Compare(a, b))
	})

	if len(holds) > 0 {
		r := row{Figure: fmt.Sprintf("RSS per idle stream, %s streams held", thousands(slices.Max(mapValues(holds, func(h holdRun) float64 { return float64(h.Streams) })))),
			Unit: "KiB", Run: "hold", Values: map[string]float64{}}
		for name, h := range holds {
			if h.KiBPerStream > 0 {
				r.Values[name] = h.KiBPerStream
			}
		}
		t.add(r)
	}

	// The rounds runs, at full speed first (by orders, then streams), then
	// those at a rate (by streams, then rate).
	type run struct {
		name          string
		k, n, rounds  int
		interval      time.Duration
		intervalLabel string
	}
	var runs []run
	for name, m := range rounds {
		var s summary
		for _, v := range m {
			s = v
			break
		}
		iv, err := time.ParseDuration(s.Interval)
		if err != nil {
			return nil, fmt.Errorf("%s: interval %q: %w", name, s.Interval, err)
		}
		rr := 0
		for _, v := range m {
			rr = max(rr, v.Rounds)
		}
		runs = append(runs, run{name, s.K, s.N, rr, iv, s.Interval})
	}
	slices.SortFunc(runs, func(a, b run) int {
		return cmp.Or(cmp.Compare(min(a.interval, 1), min(b.interval, 1)), cmp.Compare(a.k, b.k), cmp.Compare(a.n, b.n),
			cmp.Compare(b.interval, a.interval), strings.Compare(a.name, b.name))
	})
	shape := func(r run) string {
		if r.k == 1 {
			return "one order × " + thousands(float64(r.n))
		}
		return fmt.Sprintf("%s orders × %s", thousands(float64(r.k)), thousands(float64(r.n/r.k)))
	}
	values := func(r run, f func(summary) float64) map[string]float64 {
		out := map[string]float64{}
		for name, s := range rounds[r.name] {
			if s.Rounds > 0 {
				out[name] = f(s)
			}
		}
		return out
	}
	var full, rated []run
	for _, r := range runs {
		if r.interval == 0 {
			full = append(full, r)
		} else {
			rated = append(rated, r)
		}
	}
	for _, r := range full {
		t.add(row{Figure: "most deliveries/s, " + shape(r), Unit: "deliveries/s", HigherBetter: true, Run: r.name,
			Values: values(r, func(s summary) float64 { return s.PerSecond })})
	}
	for _, r := range full {
		t.add(row{Figure: "p99 at that rate, " + shape(r), Unit: "ms", Run: r.name,
			Values: values(r, func(s summary) float64 { return s.P99 })})
	}
	for _, r := range rated {
		rate := strconv.FormatFloat(float64(time.Second)/float64(r.interval), 'g', 4, 64)
		who := thousands(float64(r.n)) + " subscribers"
		if r.k > 1 {
			who = shape(r)
		}
		unit := "publishes/s"
		if rate == "1" {
			unit = "publish/s"
		}
		t.add(row{Figure: fmt.Sprintf("p99, %s, %s %s (a status every %s)", who, rate, unit, r.intervalLabel), Unit: "ms", Run: r.name,
			Values: values(r, func(s summary) float64 { return s.P99 })})
	}
	for _, r := range full {
		t.add(row{Figure: fmt.Sprintf("time to accept a round's streams, %s (median of %d rounds)", shape(r), r.rounds), Unit: "s", Run: r.name,
			Values: values(r, func(s summary) float64 { return s.ConnectP50 / 1000 })})
	}
	// Churn: the run with the most rounds (the first such, at full speed
	// first) and what its servers held after them.
	var churn *run
	for i := range runs {
		if churn == nil || runs[i].rounds > churn.rounds {
			churn = &runs[i]
		}
	}
	if churn != nil {
		r := row{Figure: fmt.Sprintf("server RSS after %d rounds of %s streams (%s)", churn.rounds, thousands(float64(churn.n)), shape(*churn)),
			Unit: "MiB", Run: churn.name, Values: map[string]float64{}}
		for name, s := range rounds[churn.name] {
			if s.RSSAfterKiB > 0 {
				r.Values[name] = float64(s.RSSAfterKiB) / 1024
			}
		}
		t.add(r)
	}
	return t, nil
}

func mapValues[V any](m map[string]V, f func(V) float64) []float64 {
	var out []float64
	for _, v := range m {
		out = append(out, f(v))
	}
	return out
}

// add appends r with its best raw form and orderstream's ratio to it, and
// notes every server missing from it.
func (t *figures) add(r row) {
	for _, s := range t.Servers {
		if _, ok := r.Values[s]; !ok {
			t.Problems = append(t.Problems, fmt.Sprintf("%s: no figure for %s (%s)", r.Run, s, r.Figure))
		}
	}
	for name, v := range r.Values {
		if !strings.HasPrefix(name, "raw") {
			continue
		}
		best, ok := r.Values[r.BestRaw]
		if !ok || (r.HigherBetter && v > best) || (!r.HigherBetter && v < best) || (v == best && name < r.BestRaw) {
			r.BestRaw = name
		}
	}
	if b, ok := r.Values[r.BestRaw]; ok && b > 0 {
		if v, ok := r.Values["orderstream"]; ok {
			r.Ratio = v / b
		}
	}
	t.Rows = append(t.Rows, r)
}

func (t *figures) markdown() string {
	var b strings.Builder
	b.WriteString("# Figures: orderstream against the raw forms\n\n")
	if t.Note != "" {
		fmt.Fprintf(&b, "**%s**\n\n", t.Note)
	}
	fmt.Fprintf(&b, "- cores: %d\n", t.Cores)
	if t.Pinning != "" {
		fmt.Fprintf(&b, "- pinning: %s\n", t.Pinning)
	}
	var loads []string
	for _, r := range t.Rows {
		for _, s := range t.Servers {
			if l := t.Load[r.Run+"."+s]; l != "" && !slices.Contains(loads, l) {
				loads = append(loads, l)
			}
		}
	}
	if len(loads) > 0 {
		lo, hi := loadRange(loads)
		fmt.Fprintf(&b, "- load average (1 min) before the runs: %.2f to %.2f (each run's in its JSON, `box.txt`)\n", lo, hi)
	}
	b.WriteString("- ratio: orderstream over the best raw form (for memory, latency and time lower is better; for deliveries/s higher)\n\n")

	b.WriteString("| figure |")
	for _, s := range t.Servers {
		fmt.Fprintf(&b, " %s |", s)
	}
	b.WriteString(" best raw | ratio |\n|---|")
	for range t.Servers {
		b.WriteString("---|")
	}
	b.WriteString("---|---|\n")
	for _, r := range t.Rows {
		fmt.Fprintf(&b, "| %s (%s) |", r.Figure, r.Unit)
		for _, s := range t.Servers {
			if v, ok := r.Values[s]; ok {
				fmt.Fprintf(&b, " %s |", format(v, r.Unit))
			} else {
				b.WriteString(" - |")
			}
		}
		if r.BestRaw != "" {
			fmt.Fprintf(&b, " %s (%s) |", format(r.Values[r.BestRaw], r.Unit), strings.TrimPrefix(r.BestRaw, "raw-"))
		} else {
			b.WriteString(" - |")
		}
		if r.Ratio > 0 {
			fmt.Fprintf(&b, " %.2fx |\n", r.Ratio)
		} else {
			b.WriteString(" - |\n")
		}
	}
	b.WriteString("\n")
	if len(t.Problems) == 0 {
		b.WriteString("Every run: every event delivered, 0 gaps, 0 duplicates, 0 errors, every stream ended by the server after its terminal event.\n")
	} else {
		b.WriteString("Problems (these figures do not stand):\n\n")
		for _, p := range t.Problems {
			fmt.Fprintf(&b, "- %s\n", p)
		}
	}
	return b.String()
}

func loadRange(loads []string) (lo, hi float64) {
	lo = math.Inf(1)
	for _, l := range loads {
		f, err := strconv.ParseFloat(strings.Fields(l)[0], 64)
		if err != nil {
			continue
		}
		lo, hi = min(lo, f), max(hi, f)
	}
	return lo, hi
}

func format(v float64, unit string) string {
	switch unit {
	case "deliveries/s":
		return thousands(math.Round(v))
	case "KiB":
		return strconv.FormatFloat(v, 'f', 2, 64)
	case "s":
		return strconv.FormatFloat(v, 'f', 3, 64)
	case "ms":
		if v >= 100 {
			return strconv.FormatFloat(v, 'f', 0, 64)
		}
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// thousands writes a whole number with commas: 19,500.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
