package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/vk"
)

// Report is the outcome of the suite on one device.
type Report struct {
	Device string    `json:"device"`
	Driver string    `json:"driver"`
	API    string    `json:"api_version"`
	Date   time.Time `json:"date"`
	Tiers  []string  `json:"tiers"`
	Filter string    `json:"filter,omitempty"`
	// Setup holds validation errors raised before the first case (opening the device).
	Setup    []string  `json:"setup_validation,omitempty"`
	Outcomes []Outcome `json:"outcomes"`
}

// Failed counts the cases that failed, and the device set-up if it raised validation errors.
func (r *Report) Failed() int {
	n := 0
	if len(r.Setup) > 0 {
		n++
	}
	for _, o := range r.Outcomes {
		if !o.Passed() {
			n++
		}
	}
	return n
}

// Selection chooses the cases of a suite run.
type Selection struct {
	Tiers []devices.Tier // empty: every tier the engine runs
	Match *regexp.Regexp // if set, only cases whose name matches
	// NoNaive leaves out the naive baseline's cases (NaiveCases), which otherwise run, reported
	// under the tier NaiveTier, whenever the scalar tier, where the naive kernels run, is selected.
	NoNaive bool
	// NoDecode leaves out the decode cases (DecodeCases), which otherwise run at each selected
	// tier where the engine runs Decode, reported under DecodeTierName(tier).
	NoDecode bool
}

// Cases returns the selected cases, grouped by tier in the order of sel.Tiers (empty: every tier
// the engine runs), then the naive baseline's, then the decode cases by tier.
func (sel Selection) Cases(e *attention.Engine) (tiers []string, cases []Case) {
	ts := sel.Tiers
	if len(ts) == 0 {
		ts = e.ForwardTiers()
	}
	add := func(cs []Case) {
		for _, c := range cs {
			if sel.Match == nil || sel.Match.MatchString(c.String()) {
				cases = append(cases, c)
			}
		}
	}
	for _, t := range ts {
		tiers = append(tiers, t.String())
		// A tier's cases for the input types it takes on this device (a matrix tier may lack bf16
		// matrices); a forced tier the device does not run keeps all, which then fail and say why.
		takes := e.TierInputs(t)
		for _, c := range ForwardCases(t) {
			if len(takes) == 0 || slices.Contains(takes, c.DType) {
				add([]Case{c})
			}
		}
	}
	if !sel.NoNaive && slices.Contains(ts, devices.TierScalar) {
		tiers = append(tiers, NaiveTier)
		add(NaiveCases())
	}
	if !sel.NoDecode {
		decode := e.DecodeTiers()
		for _, t := range ts {
			if slices.Contains(decode, t) {
				tiers = append(tiers, DecodeTierName(t))
				takes := e.DecodeTierInputs(t) // a device may lack a matrix type
				for _, c := range DecodeCases(t) {
					if slices.Contains(takes, c.DType) {
						add([]Case{c})
					}
				}
			}
		}
	}
	return tiers, cases
}

// Suite runs the selected cases with fresh seeds, calling progress after each. Validation
// errors the engine's instance collects during a case are charged to that case.
func Suite(ctx context.Context, e *attention.Engine, sel Selection, progress func(done, total int, o Outcome)) (*Report, error) {
	p := e.Profile()
	r := &Report{Device: p.Name, Driver: p.DriverName + " " + p.DriverInfo, API: vk.Version(p.APIVersion), Date: time.Now().UTC()}
	r.Setup = messages(e.Instance().ValidationErrors())
	if sel.Match != nil {
		r.Filter = sel.Match.String()
	}
	var cases []Case
	r.Tiers, cases = sel.Cases(e)
	for i, c := range cases {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		o := Run(ctx, e, c, rand.Uint64())
		o.Validation = messages(e.Instance().ValidationErrors())
		r.Outcomes = append(r.Outcomes, o)
		if progress != nil {
			progress(i+1, len(cases), o)
		}
	}
	return r, nil
}

func messages(ms []vk.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.String())
	}
	return out
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteMarkdown writes the report as a Markdown summary per tier and a table of every case.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Conformance: %s\n\n", r.Device)
	fmt.Fprintf(&b, "- driver: %s\n- Vulkan: %s\n- date: %s\n- cases: %d, failed: %d\n",
		r.Driver, r.API, r.Date.Format(time.RFC3339), len(r.Outcomes), r.Failed())
	if r.Filter != "" {
		fmt.Fprintf(&b, "- cases matching: `%s`\n", r.Filter)
	}
	for _, m := range r.Setup {
		fmt.Fprintf(&b, "- validation error at device set-up: %s\n", m)
	}
	b.WriteString("\n")
	b.WriteString("| tier | cases | passed | worst relative error |\n| --- | --- | --- | --- |\n")
	for _, t := range r.Tiers {
		n, pass, worst := 0, 0, 0.0
		for _, o := range r.Outcomes {
			if o.Tier != t {
				continue
			}
			n++
			if o.Passed() {
				pass++
			}
			worst = max(worst, o.RelErr/o.Tol)
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %.2f of tolerance |\n", t, n, pass, worst)
	}
	b.WriteString("\n| tier | case | kernel | relative error | tolerance | result |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, o := range r.Outcomes {
		res := "pass"
		if !o.Passed() {
			res = "FAIL: " + strings.ReplaceAll(strings.Join(append([]string{o.Error}, o.Validation...), "; "), "|", "\\|")
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.2e | %.0e | %s |\n", o.Tier, o.Case, o.Kernel, o.RelErr, o.Tol, res)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
