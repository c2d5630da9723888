package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestCacheBenchJSON(t *testing.T) {
	needDevice(t)
	out, stderr, rep := runJSON[cacheReport](t, "cache-bench", "-seqs", "3", "-len", "40", "-step", "3", "-hq", "4", "-hk", "2", "-d", "32",
		"-headroom", "8", "-commits", "5", "-chunk-pages", "4")
	if !strings.Contains(out, "preallocated") || !strings.Contains(out, "page commit") {
		t.Errorf("cache-bench: no table:\n%s\n%s", out, stderr)
	}
	// Spare pages by default: one growth of every sequence, 7 tokens of 128 bytes, a page each
	// of K and V.
	if rep.Device == "" || rep.Seqs != 3 || rep.Len != 40 || rep.Step != 3 || rep.Headroom != 8 || rep.ChunkPages != 4 || rep.PageBytes == 0 || len(rep.Loops) != 2 ||
		rep.SparePages != 6 {
		t.Fatalf("cache-bench JSON: %+v", rep)
	}
	for _, l := range rep.Loops {
		if l.Steps != 14 || l.P50MS <= 0 || l.P99MS < l.P50MS || l.MaxMS < l.P99MS || l.NeededBytes != 2*3*40*2*32*2 || l.CommittedBytes < l.NeededBytes ||
			len(l.StepMS) != l.Steps || len(l.BindSteps) != l.StepsWithBinds {
			t.Errorf("loop %+v", l)
		}
	}
	g, p := rep.Loops[0], rep.Loops[1]
	if g.Name != "grown" || g.BindBatches == 0 || p.Name != "preallocated" || p.BindBatches != 0 || p.Allocations != 0 {
		t.Errorf("loops %+v", rep.Loops)
	}
	// The grown cache binds as it goes, in chunks of 4 pages: its binding steps are timed.
	if g.SubmitMSPerBatch <= 0 || g.Allocations == 0 || g.MSPerAllocation <= 0 || g.P50BindAppendMS <= 0 || g.P50BindDecodeMS <= 0 ||
		g.P50BindAppendMS+g.P50BindDecodeMS > 2*g.P50BindMS {
		t.Errorf("grown loop's binding steps %+v", g)
	}
	for i, s := range g.BindSteps {
		if s < 0 || s >= g.Steps || (i > 0 && s <= g.BindSteps[i-1]) {
			t.Errorf("bind steps %v", g.BindSteps)
		}
	}
	if rep.P99Ratio <= 0 || rep.CommitSubmitP50US <= 0 || rep.CommitDoneP50US < rep.CommitSubmitP50US || rep.CommitDoneP99US < rep.CommitDoneP50US {
		t.Errorf("report %+v", rep)
	}
}

// TestCacheBenchQuantized runs the loops over a QuantizedKVCache of each format, in batched calls
// (and, for int8, with -per-seq, in calls per sequence; for int4, with -sync-binds): the same
// report, with the bytes a float cache would need for the tokens.
func TestCacheBenchQuantized(t *testing.T) {
	needDevice(t)
	for _, c := range []struct {
		kv           string
		perSeq, sync bool
	}{{"int8", false, false}, {"int4", false, true}, {"int8", true, false}} {
		kv := c.kv
		t.Run(fmt.Sprintf("%s/per-seq=%v/sync=%v", kv, c.perSeq, c.sync), func(t *testing.T) {
			args := []string{"cache-bench", "-kv", kv, "-seqs", "3", "-len", "40", "-step", "3", "-hq", "4", "-hk", "2", "-d", "32",
				"-headroom", "8", "-commits", "5"}
			calls := "one append and one decode of all sequences a step"
			if c.perSeq {
				args, calls = append(args, "-per-seq"), "an append and a decode per sequence"
			}
			want := []string{"preallocated", "page commit", "K/V " + kv, "f16 cache needs", "committed/f16", calls}
			if c.sync {
				args, want = append(args, "-sync-binds"), append(want, "binds waited for")
			}
			out, stderr, rep := runJSON[cacheReport](t, args...)
			for _, want := range want {
				if !strings.Contains(out, want) {
					t.Errorf("cache-bench -kv %s: no %q in the table:\n%s\n%s", kv, want, out, stderr)
				}
			}
			if rep.KV != kv || rep.DType != "f16" || rep.PerSeq != c.perSeq || rep.SyncBinds != c.sync || rep.Seqs != 3 || rep.Len != 40 || rep.Step != 3 || len(rep.Loops) != 2 {
				t.Fatalf("cache-bench JSON: %+v", rep)
			}
			f := kvFormats[kv] // codes: d/PerWord 32-bit words per token and head; scales: Groups bf16
			needed := uint64(2 * 3 * 40 * 2 * (32/f.PerWord()*4 + f.Groups(32)*2))
			for _, l := range rep.Loops {
				if l.Steps != 14 || l.P50MS <= 0 || l.P99MS < l.P50MS || l.MaxMS < l.P99MS || l.NeededBytes != needed ||
					l.CommittedBytes < l.NeededBytes || l.FloatBytes != 2*3*40*2*32*2 {
					t.Errorf("loop %+v (needed %d)", l, needed)
				}
			}
			if g, p := rep.Loops[0], rep.Loops[1]; g.Name != "grown" || g.BindBatches == 0 || p.Name != "preallocated" || p.BindBatches != 0 {
				t.Errorf("loops %+v", rep.Loops)
			}
			if rep.P99Ratio <= 0 || rep.CommitSubmitP50US <= 0 {
				t.Errorf("report %+v", rep)
			}
		})
	}
}

func TestCacheBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"cache-bench", "-seqs", "0"},
		{"cache-bench", "-hq", "6", "-hk", "4"},
		{"cache-bench", "-headroom", "-2"},
		{"cache-bench", "-chunk-pages", "-1"},
		{"cache-bench", "-dtype", "f8"},
		{"cache-bench", "-kv", "int2"},
		{"cache-bench", "-kv", "f32"}, // not the -dtype
		{"cache-bench", "-kv", "int8,int4"},
		{"cache-bench", "-kv", "int4", "-d", "12"},
	} {
		_, _, err := cli(t, args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
