package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/vk"
)

func cmdConformance(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("conformance", "Runs the kernel conformance suite (every case on fresh random inputs, poisoned outputs, checked\n"+
		"against the float64 oracle) at each tier and writes PREFIX.json and PREFIX.md. With validation,\n"+
		"any validation error fails the case it happened in. Exit status 1 on any failure.", stderr)
	tiersFlag := fs.String("tiers", "all", "tiers to run (list of scalar, subgroup, coopmat, coopmat2; all = every tier the device runs)")
	out := fs.String("out", "conformance", "report prefix: writes PREFIX.json and PREFIX.md")
	filter := fs.String("filter", "", "run only the cases whose name matches this regular expression (e.g. 'f16/d128')")
	var dev deviceFlags
	dev.register(fs, vk.LayerAvailable(vk.ValidationLayer),
		"run with the Khronos validation layer; validation errors fail the case (default: on when the layer is installed)")
	if err := parse(fs, args); err != nil {
		return err
	}
	var re *regexp.Regexp
	if *filter != "" {
		var err error
		if re, err = regexp.Compile(*filter); err != nil {
			return usageError{fmt.Errorf("conformance: -filter: %w", err)}
		}
	}
	if err := checkTierNames("tiers", *tiersFlag); err != nil {
		return err
	}
	if *out == "" {
		return usageError{fmt.Errorf("conformance: -out must not be empty")}
	}
	if dir := filepath.Dir(*out); dir != "." {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return fmt.Errorf("conformance: -out %s: directory %s does not exist", *out, dir)
		}
	}

	var warnings atomic.Int64
	e, err := dev.open(func(m vk.Message) {
		if m.Severity >= vk.SeverityError {
			fmt.Fprintf(stderr, "vulkan %s\n", m)
		} else {
			fmt.Fprintf(stderr, "vulkan warning: %s\n", m)
			warnings.Add(1)
		}
	})
	if err != nil {
		return err
	}
	defer e.Close()
	defer dev.printStats(stderr, e)
	tiers, err := parseTiers(*tiersFlag, e.ForwardTiers())
	if err != nil {
		return err
	}
	p := e.Profile()
	validation := "off"
	if dev.validation {
		validation = "on"
	}
	fmt.Fprintf(stderr, "conformance: %s; tiers %s; validation %s\n", p.Summary(), tierNames(tiers), validation)

	start := time.Now()
	progress := func(done, total int, o conformance.Outcome) {
		status := "ok"
		if !o.Passed() {
			status = "FAIL: " + failure(o)
		}
		fmt.Fprintf(stderr, "[%d/%d] %s %s: %s\n", done, total, o.Tier, o.Case, status)
	}
	rep, runErr := conformance.Suite(ctx, e, conformance.Selection{Tiers: tiers, Match: re}, progress)
	if rep == nil {
		return runErr
	}
	if err := writeReport(*out, rep); err != nil {
		return err
	}

	failed := rep.Failed()
	fmt.Fprintf(stdout, "conformance on %s (%s, Vulkan %s), validation %s, %.1f s\n", rep.Device, rep.Driver, rep.API, validation, time.Since(start).Seconds())
	for _, t := range rep.Tiers {
		n, pass, worst := 0, 0, 0.0
		for _, o := range rep.Outcomes {
			if o.Tier == t {
				n++
				if o.Passed() {
					pass++
					worst = max(worst, o.RelErr/o.Tol)
				}
			}
		}
		fmt.Fprintf(stdout, "  %-9s %3d/%-3d passed; worst passing error %.2f of tolerance\n", t, pass, n, worst)
	}
	if re != nil {
		fmt.Fprintf(stdout, "  (cases matching %q only)\n", *filter)
	}
	for _, m := range rep.Setup {
		fmt.Fprintf(stdout, "validation error at device set-up: %s\n", m)
	}
	if failed > 0 {
		fmt.Fprintf(stdout, "%d of %d case(s) FAILED:\n", failed, len(rep.Outcomes))
		for _, o := range rep.Outcomes {
			if !o.Passed() {
				fmt.Fprintf(stdout, "  %s %s (%s): %s\n", o.Tier, o.Case, o.Kernel, failure(o))
			}
		}
	} else if runErr == nil {
		fmt.Fprintf(stdout, "all %d cases passed\n", len(rep.Outcomes))
	}
	if n := warnings.Load(); n > 0 {
		fmt.Fprintf(stdout, "%d validation warning(s) (not failures)\n", n)
	}
	fmt.Fprintf(stdout, "report: %s.json, %s.md\n", *out, *out)
	if runErr != nil {
		return fmt.Errorf("conformance stopped after %d cases: %w", len(rep.Outcomes), runErr)
	}
	if failed > 0 || len(rep.Outcomes) == 0 {
		if len(rep.Outcomes) == 0 {
			fmt.Fprintln(stdout, "no cases ran")
		}
		return errFailed
	}
	return nil
}

// failure describes why a case failed: its error and any validation errors.
func failure(o conformance.Outcome) string {
	parts := []string{}
	if o.Error != "" {
		parts = append(parts, o.Error)
	}
	if n := len(o.Validation); n > 0 {
		parts = append(parts, fmt.Sprintf("%d validation error(s): %s", n, strings.Join(o.Validation, " | ")))
	}
	return strings.Join(parts, "; ")
}

func writeReport(prefix string, r *conformance.Report) error {
	for _, w := range []struct {
		ext   string
		write func(io.Writer) error
	}{{".json", r.WriteJSON}, {".md", r.WriteMarkdown}} {
		f, err := os.Create(prefix + w.ext)
		if err != nil {
			return fmt.Errorf("conformance: %w", err)
		}
		err = w.write(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("conformance: writing %s: %w", prefix+w.ext, err)
		}
	}
	return nil
}
