package main

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vkattn/vkattn/devices"
)

func TestDecodeBenchJSON(t *testing.T) {
	needDevice(t)
	out, stderr, rep := runJSON[decodeReport](t, "decode-bench", "-b", "2", "-hq", "8", "-hk", "2", "-d", "64", "-lq", "3", "-causal",
		"-lk", "64,100", "-splits", "3", "-iters", "2", "-warmup", "0")
	if !strings.Contains(out, "GB/s") || !strings.Contains(stderr, "Lk=100") {
		t.Errorf("decode-bench: no table or progress:\n%s\n%s", out, stderr)
	}
	if rep.Device == "" || rep.Convention != decodeConvention || len(rep.Rows) < 2 {
		t.Fatalf("decode-bench JSON: %+v", rep)
	}
	for _, r := range rep.Rows {
		if r.Error != "" || !strings.HasSuffix(r.Kernel, "+merge") || r.MedianMS <= 0 || r.Iters != 2 {
			t.Errorf("row %+v", r)
		}
		if r.B != 2 || r.Hq != 8 || r.Hk != 2 || r.D != 64 || r.Lq != 3 || !r.Causal || r.DType != "f16" || r.Splits != 3 {
			t.Errorf("row shape %+v", r)
		}
		if want := 2 * 2 * float64(r.Lk) * 2 * 64 * 2 / (r.MedianMS / 1e3) / 1e9; r.GBps != want {
			t.Errorf("row GB/s %g, want %g", r.GBps, want)
		}
	}
}

// TestDecodeBenchSplitsList runs each row with each of a list of chunk counts and says which.
func TestDecodeBenchSplitsList(t *testing.T) {
	needDevice(t)
	out, _, rep := runJSON[decodeReport](t, "decode-bench", "-b", "2", "-hq", "4", "-hk", "2", "-d", "64", "-lk", "70", "-splits", "1,3",
		"-tiers", "scalar", "-iters", "2", "-warmup", "0")
	if !strings.Contains(out, "splits") {
		t.Errorf("decode-bench: no splits column:\n%s", out)
	}
	if len(rep.Rows) != 2 {
		t.Fatalf("decode-bench -splits 1,3: %d rows, want 2: %+v", len(rep.Rows), rep.Rows)
	}
	for i, want := range []int{1, 3} {
		r := rep.Rows[i]
		if r.Error != "" || r.Splits != want || strings.HasSuffix(r.Kernel, "+merge") != (want > 1) {
			t.Errorf("row %d: %+v, want %d splits", i, r, want)
		}
	}
}

// TestDecodeBenchHeadsMajor times heads-major K and V and reports them so.
func TestDecodeBenchHeadsMajor(t *testing.T) {
	needDevice(t)
	_, _, rep := runJSON[decodeReport](t, "decode-bench", "-b", "3", "-hq", "4", "-hk", "2", "-d", "64", "-lk", "70", "-heads-major",
		"-tiers", "scalar", "-iters", "2", "-warmup", "0")
	if len(rep.Rows) != 1 || rep.Rows[0].Error != "" || !rep.Rows[0].HeadsMajor || rep.Rows[0].MedianMS <= 0 {
		t.Fatalf("decode-bench -heads-major rows: %+v", rep.Rows)
	}
}

// TestDecodeBenchTorch runs the -torch plumbing with a stand-in for python that prints canned
// results: the decode shapes go to the script, its GB/s come back beside vkattn's.
func TestDecodeBenchTorch(t *testing.T) {
	needDevice(t)
	python, sent := fakeTorch(t, `echo '{"torch": "9.9", "device": "Fake GPU"}'
echo '{"id": 0, "gbps": {"flash": 1e-9, "cudnn": 2e-9, "efficient": null, "math": null}, "errors": {"efficient": "no kernel"}}'`)
	out, _, rep := runJSON[decodeReport](t, "decode-bench", "-b", "1", "-hq", "4", "-hk", "1", "-d", "32", "-lk", "40", "-tiers", "scalar",
		"-iters", "1", "-warmup", "0", "-torch", python, "-torch-script", filepath.Join("..", "torch", "sdpa_bench.py"))
	if shapes := sent(); len(shapes) != 1 || shapes[0] != (torchShape{ID: 0, B: 1, H: 4, Hk: 1, Lq: 1, Lk: 40, D: 32, DType: "f16"}) {
		t.Errorf("shapes sent to the script: %+v", shapes)
	}
	if len(rep.Rows) != 1 {
		t.Fatalf("decode-bench JSON rows: %+v", rep.Rows)
	}
	r := rep.Rows[0]
	if r.VsBest == nil || r.Torch["efficient"] != nil || r.TorchErrors["efficient"] != "no kernel" {
		t.Errorf("row with torch: %+v", r)
	} else if want := r.GBps / 2e-9; *r.VsBest != want {
		t.Errorf("vs best %g, want %g (the cudnn backend's)", *r.VsBest, want)
	}
	if rep.Torch["device"] != "Fake GPU" || !strings.Contains(out, "vs best") {
		t.Errorf("torch header %v; table:\n%s", rep.Torch, out)
	}
}

// TestDecodeBenchQuantizedKV: -kv times quantized K and V beside the float ones, counting the
// bytes of their codes and scales, with tokens/s and the speedup over the float row.
func TestDecodeBenchQuantizedKV(t *testing.T) {
	needDevice(t)
	out, _, rep := runJSON[decodeReport](t, "decode-bench", "-b", "2", "-hq", "4", "-hk", "2", "-d", "128", "-lq", "2", "-lk", "300",
		"-kv", "f16,int8,int4", "-tiers", "scalar", "-iters", "2", "-warmup", "0")
	if !strings.Contains(out, "tokens/s") || !strings.Contains(out, "decode_int4_scalar") {
		t.Errorf("decode-bench -kv: table:\n%s", out)
	}
	if len(rep.Rows) != 3 {
		t.Fatalf("decode-bench JSON rows: %+v", rep.Rows)
	}
	// Bytes per (token, head) of K or V: 128 f16, 128 codes and a scale, 64 bytes of codes and a scale.
	for i, c := range []struct {
		kv     string
		kernel string
		perRow float64
	}{{"f16", "decode_scalar", 256}, {"int8", "decode_int8_scalar", 130}, {"int4", "decode_int4_scalar", 66}} {
		r := rep.Rows[i]
		if r.Error != "" || r.KV != c.kv || !strings.HasPrefix(r.Kernel, c.kernel) || r.DType != "f16" || r.MedianMS <= 0 {
			t.Errorf("row %d: %+v", i, r)
		}
		if want := 2 * 2 * 300 * 2 * c.perRow / (r.MedianMS / 1e3) / 1e9; r.GBps != want {
			t.Errorf("%s: GB/s %g, want %g", c.kv, r.GBps, want)
		}
		if want := 4 / (r.MedianMS / 1e3); r.TokensPS != want {
			t.Errorf("%s: tokens/s %g, want %g", c.kv, r.TokensPS, want)
		}
		if (r.VsFloat != nil) != (c.kv != "f16") || r.VsFloat != nil && *r.VsFloat != r.TokensPS/rep.Rows[0].TokensPS {
			t.Errorf("%s: vs float %v", c.kv, r.VsFloat)
		}
	}
	_, _, err := cli(t, append([]string{"decode-bench", "-kv", "f16,int8", "-heads-major"}, deviceArgs()...)...)
	if err == nil || !strings.Contains(err.Error(), "-heads-major stores float K and V only") {
		t.Errorf("-heads-major with int8 K/V: %v", err)
	}
	_, _, err = cli(t, append([]string{"decode-bench", "-kv", "f32"}, deviceArgs()...)...)
	if err == nil || !strings.Contains(err.Error(), `-kv: "f32" is neither int8, int4 nor the -dtype f16`) {
		t.Errorf("-kv f32 with -dtype f16: %v", err)
	}
}

// Quantized K/V rows run at the listed tiers that have quantized kernels, and always at auto.
func TestQuantizedTiers(t *testing.T) {
	all := []devices.Tier{devices.TierScalar, devices.TierSubgroup, devices.TierCoopMat, devices.TierAuto}
	got := quantizedTiers(all, []devices.Tier{devices.TierScalar, devices.TierSubgroup})
	if !slices.Equal(got, []devices.Tier{devices.TierScalar, devices.TierSubgroup, devices.TierAuto}) {
		t.Errorf("quantizedTiers: %v", got)
	}
	if got := quantizedTiers([]devices.Tier{devices.TierCoopMat}, nil); len(got) != 0 {
		t.Errorf("quantizedTiers of coopmat alone: %v", got)
	}
}
