package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/vk"
)

// cli runs the command in-process.
func cli(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	err = vkattn(context.Background(), args, &o, &e)
	return o.String(), e.String(), err
}

// needDevice skips the test when there is no Vulkan device, or fails it when
// VKATTN_REQUIRE_DEVICE=1 or Vulkan fails otherwise.
func needDevice(t *testing.T) {
	t.Helper()
	if err := testenv.Probe(); err != nil {
		testenv.NoDevice(t, err)
	}
}

// deviceArgs are the flags every device test passes: validation as the project's tests use it,
// and no on-disk pipeline cache.
func deviceArgs() []string {
	return []string{fmt.Sprintf("-validation=%t", testenv.Validation()), "-pipeline-cache", "-"}
}

func TestUsage(t *testing.T) {
	out, _, err := cli(t, "-h")
	if err != nil {
		t.Fatalf("-h: %v", err)
	}
	for _, c := range commands {
		if !strings.Contains(out, c.name) {
			t.Errorf("usage does not list %q:\n%s", c.name, out)
		}
	}
	for _, args := range [][]string{nil, {"frobnicate"}} {
		_, stderr, err := cli(t, args...)
		if code := exitCode(err, &bytes.Buffer{}); code != 2 {
			t.Errorf("%q: exit status %d, want 2 (err %v)", args, code, err)
		}
		if !strings.Contains(stderr, "Commands:") {
			t.Errorf("%q: no usage on stderr:\n%s", args, stderr)
		}
	}
	// Each command's -h (run's trailing -h too, though -h is also its head count) is help.
	for _, c := range commands {
		_, stderr, err := cli(t, c.name, "-h")
		if !errors.Is(err, flag.ErrHelp) || exitCode(err, &bytes.Buffer{}) != 0 {
			t.Errorf("%s -h: %v", c.name, err)
		}
		if !strings.Contains(stderr, "Usage: vkattn "+c.name) {
			t.Errorf("%s -h: no usage:\n%s", c.name, stderr)
		}
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"devices", "-nope"},
		{"devices", "extra"},
		{"run", "-l", "0"},
		{"run", "-l", "abc"},
		{"run", "-h", "6", "-hk", "4"},
		{"run", "-dtype", "f8"},
		{"run", "-d", "48"},
		{"run", "-tier", "fastest"},
		{"run", "-check", "-1"},
		{"bench", "-causal", "maybe"},
		{"bench", "-dtype", "f16,int3"},
		{"bench", "-tiers", "scalar,warp"},
		{"bench", "-iters", "-2"},
		{"decode-bench", "-splits", "-1"},
		{"decode-bench", "-splits", "2,x"},
		{"decode-bench", "-splits", ","},
		{"conformance", "-filter", "("},
		{"conformance", "-tiers", "gpu"},
		{"conformance", "-out", ""},
	} {
		_, stderr, err := cli(t, args...)
		var ue usageError
		if err == nil || !errors.As(err, &ue) {
			t.Errorf("%q: got %v, want a usage error", args, err)
			continue
		}
		var msg bytes.Buffer
		if code := exitCode(err, &msg); code != 2 || !strings.Contains(msg.String(), "vkattn:") {
			t.Errorf("%q: exit status %d, message %q", args, code, msg.String())
		}
		_ = stderr
	}
}

func TestDevicesTableSimulated(t *testing.T) {
	var profiles []devices.Profile
	for _, name := range []string{"nvidia-h100", "amd-rdna3", "lavapipe"} {
		p, err := devices.Simulated(name)
		if err != nil {
			t.Fatal(err)
		}
		profiles = append(profiles, p)
	}
	infos := describeDevices(profiles, 0)
	var b bytes.Buffer
	if err := writeDevices(&b, infos); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"device 0 (default)", "device 2:", "forward", "80.0 GiB", "coopmat2"} {
		if !strings.Contains(out, want) {
			t.Errorf("devices table lacks %q:\n%s", want, out)
		}
	}
	if !infos[0].CoopMat2 || len(infos[0].CoopMatShapes) == 0 {
		t.Errorf("H100 profile: coopmat2 %v, shapes %v", infos[0].CoopMat2, infos[0].CoopMatShapes)
	}
	if fw := infos[2].Ops["forward"]; fw.Kernel == "" || fw.Error != "" {
		t.Errorf("lavapipe forward: %+v", fw)
	}
}

// The forward's line and JSON say what Forward accepts, not what the features alone suggest:
// intel-arc has cooperative matrices but no 16x16x16 fp16 shape, so no coopmat tier; the H100
// runs fp16 and bf16 at the coopmat tier and fp32 at the subgroup tier.
func TestDevicesForwardTiersSimulated(t *testing.T) {
	var profiles []devices.Profile
	for _, name := range []string{"intel-arc", "nvidia-h100", "lavapipe"} {
		p, err := devices.Simulated(name)
		if err != nil {
			t.Fatal(err)
		}
		profiles = append(profiles, p)
	}
	small := profiles[1] // 16 KiB of shared memory and no coopmat2: no coopmat tile of d=256 fits
	small.MaxSharedMemory = 16 << 10
	small.Features.CooperativeMatrix2 = false
	profiles = append(profiles, small)
	k32 := profiles[1] // bf16 workgroup-scope matrices of depth granularity 32: no bf16 coopmat2 at d=80
	k32.CoopMatFlexible = slices.Clone(k32.CoopMatFlexible)
	for i := range k32.CoopMatFlexible {
		if k32.CoopMatFlexible[i].A == vk.ComponentBF16 {
			k32.CoopMatFlexible[i].K = 32
		}
	}
	profiles = append(profiles, k32)
	infos := describeDevices(profiles, 0)
	if got := infos[4].Ops["forward"].InputHeadDims; !reflect.DeepEqual(got, map[string]map[string][]int{"coopmat2": {"bf16": {32, 64, 96, 128, 192, 256}}}) {
		t.Errorf("H100 with bf16 K granularity 32: input head dims %v", got)
	}
	arc, h100, lvp := infos[0].Ops["forward"], infos[1].Ops["forward"], infos[2].Ops["forward"]
	if !slices.Equal(arc.Tiers, []string{"scalar", "subgroup"}) || arc.Tier != "subgroup" || arc.Inputs["coopmat"] != nil {
		t.Errorf("intel-arc forward: %+v", arc)
	}
	if !slices.Equal(h100.Tiers, []string{"scalar", "subgroup", "coopmat", "coopmat2"}) || h100.Tier != "coopmat" ||
		!slices.Equal(h100.Inputs["coopmat"], []string{"f16", "bf16"}) || !slices.Equal(h100.Inputs["coopmat2"], []string{"f16", "bf16"}) || !slices.Equal(h100.Inputs["subgroup"], []string{"f32", "f16", "bf16"}) {
		t.Errorf("H100 forward: %+v", h100)
	}
	wantAuto := []autoInfo{{DType: "f32", Tier: "subgroup", Kernel: "flash_fwd_subgroup"},
		{DType: "f16", Tier: "coopmat", Kernel: "flash_fwd_coopmat"}, {DType: "bf16", Tier: "coopmat", Kernel: "flash_fwd_coopmat_bf16"}}
	if !slices.EqualFunc(h100.Auto, wantAuto, func(a, b autoInfo) bool {
		return a.DType == b.DType && a.Tier == b.Tier && a.Kernel == b.Kernel && a.HeadDims == nil && a.Error == ""
	}) {
		t.Errorf("H100 automatic choice: %+v", h100.Auto)
	}
	if !slices.Equal(lvp.Tiers, []string{"scalar", "subgroup"}) || lvp.Tier != "subgroup" {
		t.Errorf("lavapipe forward: %+v", lvp)
	}
	var b bytes.Buffer
	if err := writeDevices(&b, infos); err != nil {
		t.Fatal(err)
	}
	lines := map[int]string{}
	dev := -1
	for _, l := range strings.Split(b.String(), "\n") {
		fmt.Sscanf(l, "device %d", &dev)
		if strings.HasPrefix(strings.TrimSpace(l), "forward") {
			lines[dev] = l
		}
	}
	if strings.Contains(lines[0], "coopmat") {
		t.Errorf("intel-arc forward line names coopmat: %q", lines[0])
	}
	for _, want := range []string{"coopmat (flash_fwd_coopmat) for f16; coopmat (flash_fwd_coopmat_bf16) for bf16; subgroup (flash_fwd_subgroup) for f32",
		"can be forced to: scalar (f32, f16, bf16), subgroup (f32, f16, bf16), coopmat (f16, bf16), coopmat2 (f16, bf16)"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("H100 forward line lacks %q: %q", want, lines[1])
		}
	}
	for _, want := range []string{"coopmat (flash_fwd_coopmat) for f16 (d 32, 64, 80, 96, 128, 192); coopmat (flash_fwd_coopmat_bf16) for bf16 (d 32, 64, 80, 96, 128, 192); subgroup (flash_fwd_subgroup) for f32, f16 (d 256), bf16 (d 256)",
		"coopmat (f16, bf16; d 32, 64, 80, 96, 128, 192)"} {
		if !strings.Contains(lines[3], want) {
			t.Errorf("H100 with 16 KiB forward line lacks %q: %q", want, lines[3])
		}
	}
	if want := "coopmat2 (f16, bf16 (d 32, 64, 96, 128, 192, 256))"; !strings.Contains(lines[4], want) {
		t.Errorf("H100 with bf16 K granularity 32: forward line lacks %q: %q", want, lines[4])
	}
}

func TestDevicesJSON(t *testing.T) {
	needDevice(t)
	out, _, err := cli(t, "devices", "-json")
	if err != nil {
		t.Fatal(err)
	}
	var infos []deviceInfo
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatalf("devices -json: %v\n%s", err, out)
	}
	defaults := 0
	for _, d := range infos {
		if d.Default {
			defaults++
			fw := d.Ops["forward"]
			if fw.Kernel == "" || fw.Tier == "" || !slices.Contains(fw.Tiers, "scalar") {
				t.Errorf("default device %s: forward %+v", d.Name, fw)
			}
		}
		if d.Name == "" || d.Vulkan == "" || d.Subgroup == 0 {
			t.Errorf("device %d incomplete: %+v", d.Index, d)
		}
	}
	if len(infos) == 0 || defaults != 1 {
		t.Fatalf("%d devices, %d marked default", len(infos), defaults)
	}
	table, _, err := cli(t, "devices")
	if err != nil || !strings.Contains(table, "(default)") || !strings.Contains(table, infos[0].Name) {
		t.Errorf("devices: %v\n%s", err, table)
	}
}

func TestRun(t *testing.T) {
	needDevice(t)
	for _, args := range [][]string{
		{"-l", "64", "-h", "2", "-d", "64", "-iters", "2"},
		{"-l", "33", "-lk", "70", "-h", "4", "-hk", "2", "-d", "32", "-dtype", "f32", "-check", "0", "-tier", "scalar", "-iters", "1"},
		{"-b", "2", "-l", "40", "-h", "2", "-d", "64", "-dtype", "bf16", "-causal=false", "-check", "5", "-iters", "1", "-warmup", "0"},
	} {
		out, stderr, err := cli(t, append(append([]string{"run"}, args...), deviceArgs()...)...)
		if err != nil {
			t.Errorf("run %q: %v\n%s\n%s", args, err, out, stderr)
			continue
		}
		for _, want := range []string{"device:", "kernel:  flash_fwd_", ": PASS", "median", "TFLOP/s", "halved when causal"} {
			if !strings.Contains(out, want) {
				t.Errorf("run %q: output lacks %q:\n%s", args, want, out)
			}
		}
	}
}

func TestBenchJSON(t *testing.T) {
	needDevice(t)
	out, stderr, rep := runJSON[benchReport](t, "bench", "-d", "64", "-l", "64", "-tokens", "128", "-hidden", "128", "-causal", "true",
		"-iters", "2", "-warmup", "0")
	if !strings.Contains(stderr, "[1/") || !strings.Contains(out, "kernel") {
		t.Errorf("bench: no progress or table:\n%s\n%s", stderr, out)
	}
	if rep.Device == "" || rep.Convention == "" {
		t.Errorf("bench JSON lacks device or convention: %+v", rep)
	}
	var tiers []string
	for _, r := range rep.Rows {
		tiers = append(tiers, r.Tier)
		if r.Error != "" || r.Kernel == "" || r.MedianMS <= 0 || r.TFLOPS <= 0 || r.Iters != 2 {
			t.Errorf("row %+v", r)
		}
		if r.B != 2 || r.H != 2 || r.L != 64 || r.D != 64 || !r.Causal || r.DType != "f16" {
			t.Errorf("row shape %+v, want B=2 H=2 L=64 d=64 causal f16", r.benchShape)
		}
		if want := r.flops() / (r.MedianMS / 1e3) / 1e12; r.TFLOPS != want {
			t.Errorf("row TFLOP/s %g, want %g", r.TFLOPS, want)
		}
	}
	if !slices.Contains(tiers, "scalar") || !slices.Contains(tiers, naiveTier) {
		t.Errorf("rows at tiers %v, want every tier and %s", tiers, naiveTier)
	}
}

// TestBenchTorch runs the -torch plumbing with a stand-in for python that prints canned results.
func TestBenchTorch(t *testing.T) {
	needDevice(t)
	python, sent := fakeTorch(t, `echo "some warning on stdout"
echo '{"torch": "9.9", "device": "Fake GPU"}'
echo '{"id": 0, "tflops": {"flash": 1e-9, "cudnn": null, "efficient": 2e-9, "math": null}, "errors": {"cudnn": "no kernel", "math": "skipped"}}'`)
	out, stderr, rep := runJSON[benchReport](t, "bench", "-d", "32", "-l", "16", "-tokens", "16", "-hidden", "64", "-causal", "false",
		"-tiers", "scalar", "-iters", "1", "-warmup", "0", "-torch", python, "-torch-script", filepath.Join("..", "torch", "sdpa_bench.py"))
	if shapes := sent(); len(shapes) != 1 || shapes[0] != (torchShape{ID: 0, B: 1, H: 2, Hk: 2, Lq: 16, Lk: 16, D: 32, DType: "f16"}) {
		t.Errorf("shapes sent to the script: %+v", shapes)
	}
	if len(rep.Rows) != 1 {
		t.Fatalf("bench JSON rows: %+v", rep.Rows)
	}
	r := rep.Rows[0]
	if r.VsFlash == nil || r.VsCudnn != nil || r.Torch["cudnn"] != nil || r.TorchErrors["cudnn"] != "no kernel" {
		t.Errorf("row with torch: %+v", r)
	} else if want := r.TFLOPS / 1e-9; *r.VsFlash != want {
		t.Errorf("vs flash %g, want %g", *r.VsFlash, want)
	}
	if rep.Torch["device"] != "Fake GPU" || !strings.Contains(out, "vs flash") || !strings.Contains(stderr, "some warning") {
		t.Errorf("torch header %v; table:\n%s\nstderr:\n%s", rep.Torch, out, stderr)
	}
}

// TestTorchScriptWithoutTorch checks that the real script's failure to import torch (or to
// find CUDA) is a clear error.
func TestTorchScriptWithoutTorch(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	if exec.Command(py, "-c", "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)").Run() == nil {
		t.Skip("this machine has PyTorch with CUDA")
	}
	script, err := findTorchScript("")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _, err = runTorch(ctx, py, script, []benchShape{{DType: "f16", B: 1, H: 1, L: 16, D: 32}}, 0, 0, &bytes.Buffer{})
	if err == nil || !(strings.Contains(err.Error(), "torch") || strings.Contains(err.Error(), "CUDA")) {
		t.Fatalf("got %v, want an error about torch or CUDA", err)
	}
}

func TestConformance(t *testing.T) {
	needDevice(t)
	prefix := filepath.Join(t.TempDir(), "conf")
	// Two small cases: one token, and a causal one with rows that see no key.
	args := append([]string{"conformance", "-tiers", "scalar", "-filter", `^f32/d64/h4:4/q\[(1|70)\]/k\[(1|19)\](/causal)?$`,
		"-out", prefix}, deviceArgs()...)
	out, stderr, err := cli(t, args...)
	if err != nil {
		t.Fatalf("conformance: %v\n%s\n%s", err, out, stderr)
	}
	if !strings.Contains(out, "all 2 cases passed") || !strings.Contains(stderr, "[2/2]") {
		t.Errorf("conformance output:\n%s\n%s", out, stderr)
	}
	rep := readReport[conformance.Report](t, prefix+".json")
	if len(rep.Outcomes) != 2 || rep.Failed() != 0 {
		t.Fatalf("report: %+v", rep)
	}
	md, err := os.ReadFile(prefix + ".md")
	if err != nil || !strings.Contains(string(md), "| scalar |") {
		t.Errorf("markdown report: %v\n%s", err, md)
	}
	// A filter that matches nothing is a failure, not a pass.
	_, _, err = cli(t, append([]string{"conformance", "-tiers", "scalar", "-filter", "^nothing$", "-out", prefix}, deviceArgs()...)...)
	if !errors.Is(err, errFailed) {
		t.Errorf("empty conformance run: %v, want failure", err)
	}
}

func TestSampleTokens(t *testing.T) {
	for _, c := range []struct {
		b, l, n int
		want    []int
	}{
		{1, 5, 0, []int{0, 1, 2, 3, 4}},
		{1, 5, 9, []int{0, 1, 2, 3, 4}},
		{1, 10, 1, []int{9}},
		{1, 10, 2, []int{0, 9}},
		{1, 10, 4, []int{0, 3, 6, 9}},
		{2, 7, 3, []int{0, 3, 6, 7, 10, 13}},
	} {
		if got := sampleTokens(c.b, c.l, c.n); !slices.Equal(got, c.want) {
			t.Errorf("sampleTokens(%d, %d, %d) = %v, want %v", c.b, c.l, c.n, got, c.want)
		}
	}
	got := sampleTokens(1, 2048, 64)
	if len(got) != 64 || got[0] != 0 || got[63] != 2047 || !slices.IsSorted(got) {
		t.Errorf("sampleTokens(1, 2048, 64) = %v", got)
	}
}

func TestAutoItersAndFLOPs(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		one  time.Duration
		want int
	}{{ms, 1000}, {10 * ms, 100}, {400 * ms, 3}, {4 * time.Second, 2}, {20 * time.Second, 1}} {
		if got := autoIters(c.one, time.Second, 10*time.Second, 3, 1000); got != c.want {
			t.Errorf("autoIters(%v) = %d, want %d", c.one, got, c.want)
		}
	}
	if f := forwardFLOPs(1, 16, 2048, 2048, 128, true); f != 4*16*2048*2048*128/2 {
		t.Errorf("causal square FLOPs %g", f)
	}
	if f := forwardFLOPs(2, 1, 10, 20, 64, true); f != 4*2*10*20*64 {
		t.Errorf("causal Lq != Lk FLOPs %g", f)
	}
	if m := median([]time.Duration{5, 1, 3, 2}); m != 2 {
		t.Errorf("median %v", m)
	}
}

// runJSON runs a command on the test device with -json into a temporary file, fails the test if
// it fails, and returns its output and the report it wrote.
func runJSON[R any](t *testing.T, args ...string) (stdout, stderr string, rep R) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "report.json")
	out, errOut, err := cli(t, slices.Concat(args, []string{"-json", file}, deviceArgs())...)
	if err != nil {
		t.Fatalf("%s: %v\n%s\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out, errOut, readReport[R](t, file)
}

// fakeTorch writes a stand-in for python that keeps the request it reads on stdin and prints
// output (shell lines) instead of timing PyTorch. sent returns the shapes of the request.
func fakeTorch(t *testing.T, output string) (python string, sent func() []torchShape) {
	t.Helper()
	dir := t.TempDir()
	python, stdin := filepath.Join(dir, "python"), filepath.Join(dir, "stdin.json")
	if err := os.WriteFile(python, []byte("#!/bin/sh\ncat > \""+stdin+"\"\n"+output+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return python, func() []torchShape {
		t.Helper()
		var req struct {
			Shapes []torchShape `json:"shapes"`
		}
		if b, err := os.ReadFile(stdin); err != nil || json.Unmarshal(b, &req) != nil {
			t.Fatalf("script input: %v %s", err, b)
		}
		return req.Shapes
	}
}

// readReport reads the JSON report that a bench command wrote to file.
func readReport[R any](t *testing.T, file string) R {
	t.Helper()
	var rep R
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("%s: %v\n%s", file, err, b)
	}
	return rep
}
