package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/attention/conformance"
	"github.com/vkattn/vkattn/attention/reference"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/vk"
)

// Timing of `vkattn run` with -iters 0: enough timed runs for about runTarget, at least 3, but
// no more than fit in runBudget on a slow device (then at least 1).
const (
	runTarget = time.Second
	runBudget = 10 * time.Second
)

type runFlags struct {
	b, h, hk, l, lk, d int
	dtype, tier        string
	causal             bool
	iters, warmup      int
	check              int
	seed               uint64
	dev                deviceFlags
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "Runs one FlashAttention forward on random normal inputs, checks sampled query rows (all heads)\n"+
		"against the float64 oracle, and times it with device timestamps. Exit status 1 if the check fails.", stderr)
	var f runFlags
	fs.IntVar(&f.b, "b", 1, "batch size")
	fs.IntVar(&f.h, "h", 16, "query heads")
	fs.IntVar(&f.hk, "hk", 0, "key/value heads (0 = -h; fewer for GQA/MQA)")
	fs.IntVar(&f.l, "l", 2048, "query sequence length")
	fs.IntVar(&f.lk, "lk", 0, "key/value sequence length (0 = -l)")
	fs.IntVar(&f.d, "d", 128, fmt.Sprintf("head dim (one of %v)", attention.HeadDims))
	fs.StringVar(&f.dtype, "dtype", "f16", "storage type: f32, f16 or bf16")
	fs.BoolVar(&f.causal, "causal", true, "causal mask (bottom-right aligned when Lq != Lk)")
	fs.StringVar(&f.tier, "tier", "auto", "kernel tier: auto, scalar, subgroup, coopmat or coopmat2")
	fs.IntVar(&f.iters, "iters", 0, fmt.Sprintf("timed runs (0 = about %v of runs, at least 3, fewer if one run is slow)", runTarget))
	fs.IntVar(&f.warmup, "warmup", -1, "untimed runs before timing (-1 = 1, or 0 when one run is slow)")
	fs.IntVar(&f.check, "check", 64, "query rows per sequence checked against the oracle, spread from first to last (0 = all)")
	fs.Uint64Var(&f.seed, "seed", 0, "random seed of the inputs (0 = a fresh one, printed)")
	f.dev.register(fs, false, "enable the Khronos validation layer (any validation error fails the run)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if f.hk == 0 {
		f.hk = f.h
	}
	if f.lk == 0 {
		f.lk = f.l
	}
	for _, c := range []struct {
		name string
		v    int
	}{{"b", f.b}, {"h", f.h}, {"hk", f.hk}, {"l", f.l}, {"lk", f.lk}, {"d", f.d}} {
		if c.v <= 0 {
			return usageError{fmt.Errorf("run: -%s must be positive, got %d", c.name, c.v)}
		}
	}
	if !slices.Contains(attention.HeadDims, f.d) {
		return usageError{fmt.Errorf("run: head dim -d %d is not supported (have %v)", f.d, attention.HeadDims)}
	}
	if f.h%f.hk != 0 {
		return usageError{fmt.Errorf("run: -h %d is not a multiple of -hk %d", f.h, f.hk)}
	}
	if f.check < 0 || f.iters < 0 || f.warmup < -1 {
		return usageError{fmt.Errorf("run: -check and -iters must be >= 0, -warmup >= -1")}
	}
	dt, err := memory.ParseDType(f.dtype)
	if err != nil {
		return usageError{err}
	}
	tier, err := devices.ParseTier(f.tier)
	if err != nil {
		return usageError{err}
	}
	if f.seed == 0 {
		f.seed = rand.Uint64()
	}

	e, err := f.dev.open(printMessages(stderr, vk.SeverityWarning))
	if err != nil {
		return err
	}
	defer e.Close()
	p := e.Profile()
	validation := ""
	if f.dev.validation {
		validation = " [validation on]"
	}
	fmt.Fprintf(stdout, "device:  %s%s\n", p.Summary(), validation)
	causal := ""
	if f.causal {
		causal = ", causal"
	}
	fmt.Fprintf(stdout, "shape:   q [B=%d, L=%d, H=%d, d=%d], k/v [B=%d, L=%d, H=%d, d=%d], %s%s (seed %d)\n",
		f.b, f.l, f.h, f.d, f.b, f.lk, f.hk, f.d, dt, causal, f.seed)

	r := conformance.NewRand(f.seed)
	qh, kh, vh := conformance.Randn(r, dt, f.b*f.l*f.h*f.d), conformance.Randn(r, dt, f.b*f.lk*f.hk*f.d), conformance.Randn(r, dt, f.b*f.lk*f.hk*f.d)
	var ts tensors
	defer ts.close()
	q, err := ts.upload(ctx, e, dt, qh, f.b, f.l, f.h, f.d)
	if err != nil {
		return fmt.Errorf("q: %w", err)
	}
	k, err := ts.upload(ctx, e, dt, kh, f.b, f.lk, f.hk, f.d)
	if err != nil {
		return fmt.Errorf("k: %w", err)
	}
	v, err := ts.upload(ctx, e, dt, vh, f.b, f.lk, f.hk, f.d)
	if err != nil {
		return fmt.Errorf("v: %w", err)
	}
	o, err := ts.alloc(e, dt, f.b, f.l, f.h, f.d)
	if err != nil {
		return fmt.Errorf("o: %w", err)
	}
	lse, err := ts.alloc(e, memory.F32, f.b, f.l, f.h)
	if err != nil {
		return fmt.Errorf("lse: %w", err)
	}
	if err := o.Fill(ctx, conformance.Poison); err != nil {
		return fmt.Errorf("poisoning o: %w", err)
	}
	if err := lse.Fill(ctx, conformance.Poison); err != nil {
		return fmt.Errorf("poisoning lse: %w", err)
	}
	opts := attention.Options{Causal: f.causal, LSE: true, Tier: tier}

	// The checked run is also the first timed one: on a slow device (lavapipe) it may be the only one.
	start := time.Now()
	first, kernel, err := e.TimeForward(ctx, o, lse, q, k, v, opts, 0, 1)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "kernel:  %s (tier %s; first run %.1f ms on the device, %.1f s wall with pipeline creation)\n",
		kernel, tierOf(kernel), ms(first[0]), time.Since(start).Seconds())

	// The check.
	tokens := sampleTokens(f.b, f.l, f.check)
	params := reference.Params{Hq: f.h, Hk: f.hk, D: f.d, CuSeqlensQ: reference.Uniform(f.b, f.l),
		CuSeqlensK: reference.Uniform(f.b, f.lk), Causal: f.causal, WindowLeft: -1, WindowRight: -1}
	start = time.Now()
	wantO, wantLSE, err := forwardRowsParallel(params, conformance.Widen(qh), conformance.Widen(kh), conformance.Widen(vh), tokens)
	if err != nil {
		return fmt.Errorf("oracle: %w", err)
	}
	oracleTime := time.Since(start)
	gotAll, err := o.Download(ctx)
	if err != nil {
		return fmt.Errorf("downloading o: %w", err)
	}
	lseAll, err := lse.Download(ctx)
	if err != nil {
		return fmt.Errorf("downloading lse: %w", err)
	}
	row := f.h * f.d
	got := make([]float32, 0, len(tokens)*row)
	gotLSE := make([]float32, 0, len(tokens)*f.h)
	for _, t := range tokens {
		got = append(got, gotAll[t*row:(t+1)*row]...)
		gotLSE = append(gotLSE, lseAll[t*f.h:(t+1)*f.h]...)
	}
	tol := conformance.Tolerance(dt)
	rel, checkErr := conformance.CompareOutput(got, wantO, tol)
	if checkErr == nil {
		if err := conformance.CompareLSE(gotLSE, wantLSE); err != nil {
			checkErr = fmt.Errorf("logsumexp: %w", err)
		}
	}
	if checkErr == nil {
		checkErr = e.Instance().CheckValidation()
	}
	verdict := "PASS"
	if checkErr != nil {
		verdict = "FAIL"
	}
	what := fmt.Sprintf("%d of %d query rows per sequence", len(tokens)/f.b, f.l)
	if len(tokens) == f.b*f.l {
		what = "all query rows"
	}
	fmt.Fprintf(stdout, "check:   %s, all heads, vs float64 oracle (%.2g s): max relative error %.3g (tolerance %.0e for %s), logsumexp within %.0e: %s\n",
		what, oracleTime.Seconds(), rel, tol, dt, conformance.LSETolerance, verdict)
	if checkErr != nil {
		fmt.Fprintf(stdout, "         %v\n", checkErr)
	}

	// The timing, on the output of the checked run (o is rewritten with the same values).
	iters, warmup := f.iters, f.warmup
	if iters == 0 {
		iters = autoIters(first[0], runTarget, runBudget, 3, 1000)
		if warmup < 0 && first[0] > runTarget/10 {
			warmup = 0 // a slow run: the checked run was the warm-up
		}
	}
	if warmup < 0 {
		warmup = 1
	}
	times := first
	if iters > 1 || f.iters > 0 {
		if times, _, err = e.TimeForward(ctx, o, lse, q, k, v, opts, warmup, iters); err != nil {
			return err
		}
	} else {
		warmup = 0 // one run is too slow to repeat: report the checked run's time
	}
	med := median(times)
	flops := forwardFLOPs(f.b, f.h, f.l, f.lk, f.d, f.causal)
	note := ""
	if len(times) == 1 && f.iters == 0 {
		note = fmt.Sprintf("; one run takes over %v here, so it was timed once: -iters N for more", runBudget/2)
	}
	fmt.Fprintf(stdout, "time:    median %.3f ms of %d run(s) (min %.3f ms, %d warm-up; device timestamps%s)\n",
		ms(med), len(times), ms(minDuration(times)), warmup, note)
	fmt.Fprintf(stdout, "speed:   %s (%s: %.3g GFLOP)\n", rateString(tflops(flops, med)), flopConvention, flops/1e9)
	f.dev.printStats(stdout, e)
	if err := e.Instance().CheckValidation(); err != nil {
		fmt.Fprintf(stdout, "FAIL: %v\n", err)
		return errFailed
	}
	if checkErr != nil {
		return errFailed
	}
	return nil
}

func minDuration(ts []time.Duration) time.Duration {
	m := ts[0]
	for _, t := range ts[1:] {
		m = min(m, t)
	}
	return m
}

// sampleTokens returns the query tokens checked: n rows per sequence spread evenly from the first
// to the last (all rows when n is 0 or at least l), as indices into the dense [B*L] token axis.
func sampleTokens(b, l, n int) []int {
	var rows []int
	switch {
	case n == 0 || n >= l:
		for i := range l {
			rows = append(rows, i)
		}
	case n == 1:
		rows = []int{l - 1}
	default:
		for i := range n {
			r := int((int64(i)*int64(l-1) + int64(n-1)/2) / int64(n-1))
			if len(rows) == 0 || rows[len(rows)-1] != r {
				rows = append(rows, r)
			}
		}
	}
	out := make([]int, 0, b*len(rows))
	for s := range b {
		for _, r := range rows {
			out = append(out, s*l+r)
		}
	}
	return out
}

// forwardRowsParallel is reference.ForwardRows split over the CPUs.
func forwardRowsParallel(p reference.Params, q, k, v []float64, tokens []int) (o, lse []float64, err error) {
	parts := min(runtime.GOMAXPROCS(0), len(tokens))
	if parts <= 1 {
		return reference.ForwardRows(p, q, k, v, tokens)
	}
	outs, lses, errs := make([][]float64, parts), make([][]float64, parts), make([]error, parts)
	var wg sync.WaitGroup
	for i := range parts {
		lo, hi := i*len(tokens)/parts, (i+1)*len(tokens)/parts
		wg.Go(func() { outs[i], lses[i], errs[i] = reference.ForwardRows(p, q, k, v, tokens[lo:hi]) })
	}
	wg.Wait()
	for i := range parts {
		if errs[i] != nil {
			return nil, nil, errs[i]
		}
		o, lse = append(o, outs[i]...), append(lse, lses[i]...)
	}
	return o, lse, nil
}

// tensors closes the tensors it made.
type tensors []*memory.Tensor

func (ts *tensors) alloc(e *attention.Engine, dt memory.DType, shape ...int) (*memory.Tensor, error) {
	t, err := e.NewTensor(dt, shape...)
	if err != nil {
		return nil, err
	}
	*ts = append(*ts, t)
	return t, nil
}

func (ts *tensors) upload(ctx context.Context, e *attention.Engine, dt memory.DType, data []float32, shape ...int) (*memory.Tensor, error) {
	t, err := e.Upload(ctx, dt, data, shape...)
	if err != nil {
		return nil, err
	}
	*ts = append(*ts, t)
	return t, nil
}

func (ts *tensors) close() {
	for _, t := range *ts {
		t.Close()
	}
	*ts = nil
}
