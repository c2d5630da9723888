package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCacheBenchJSON(t *testing.T) {
	needDevice(t)
	file := filepath.Join(t.TempDir(), "cache.json")
	args := append([]string{"cache-bench", "-seqs", "3", "-len", "40", "-step", "3", "-hq", "4", "-hk", "2", "-d", "32",
		"-headroom", "8", "-commits", "5", "-json", file}, deviceArgs()...)
	out, stderr, err := cli(t, args...)
	if err != nil {
		t.Fatalf("cache-bench: %v\n%s\n%s", err, out, stderr)
	}
	if !strings.Contains(out, "preallocated") || !strings.Contains(out, "page commit") {
		t.Errorf("cache-bench: no table:\n%s\n%s", out, stderr)
	}
	var rep cacheReport
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("cache-bench JSON: %v\n%s", err, b)
	}
	if rep.Device == "" || rep.Seqs != 3 || rep.Len != 40 || rep.Step != 3 || rep.Headroom != 8 || rep.PageBytes == 0 || len(rep.Loops) != 2 {
		t.Fatalf("cache-bench JSON: %+v", rep)
	}
	for _, l := range rep.Loops {
		if l.Steps != 14 || l.P50MS <= 0 || l.P99MS < l.P50MS || l.MaxMS < l.P99MS || l.NeededBytes != 2*3*40*2*32*2 || l.CommittedBytes < l.NeededBytes {
			t.Errorf("loop %+v", l)
		}
	}
	if g, p := rep.Loops[0], rep.Loops[1]; g.Name != "grown" || g.BindBatches == 0 || p.Name != "preallocated" || p.BindBatches != 0 {
		t.Errorf("loops %+v", rep.Loops)
	}
	if rep.P99Ratio <= 0 || rep.CommitSubmitP50US <= 0 || rep.CommitDoneP50US < rep.CommitSubmitP50US || rep.CommitDoneP99US < rep.CommitDoneP50US {
		t.Errorf("report %+v", rep)
	}
}

func TestCacheBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"cache-bench", "-seqs", "0"},
		{"cache-bench", "-hq", "6", "-hk", "4"},
		{"cache-bench", "-headroom", "-2"},
		{"cache-bench", "-dtype", "f8"},
	} {
		_, _, err := cli(t, args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
