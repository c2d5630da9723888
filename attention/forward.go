package attention

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/shaders"
)

// HeadDims are the head dimensions the forward kernels support.
var HeadDims = []int{32, 64, 80, 96, 128, 192, 256}

// Window is a sliding-window mask: query i (bottom-right aligned, see Options.Causal) sees keys
// j with i' - Left <= j <= i' + Right where i' = i + Lk - Lq; -1 leaves a side unbounded.
type Window struct{ Left, Right int }

// Options of Forward. The zero value is plain softmax(Q K^T / sqrt(d)) V.
type Options struct {
	// Scale multiplies Q K^T; 0 means 1/sqrt(head dim).
	Scale float32
	// Causal masks keys after the query, aligned at the bottom-right corner when Lq != Lk: query
	// i sees keys j <= i + Lk - Lq, as FlashAttention-2 does (and decoding expects). Rows that see
	// no key give output 0 and logsumexp -Inf.
	Causal bool
	// Window, if set, is a sliding-window mask; with Causal its Right bound becomes 0.
	Window *Window
	// Softcap, if positive, replaces each scaled score s by Softcap * tanh(s / Softcap).
	Softcap float32
	// CuSeqlensQ and CuSeqlensK select the packed ("varlen") layout of flash_attn_varlen_func:
	// q is [totalQ, Hq, D] and k, v are [totalK, Hk, D]; sequence b owns query tokens
	// [CuSeqlensQ[b], CuSeqlensQ[b+1]) and key tokens [CuSeqlensK[b], CuSeqlensK[b+1]). Both nil
	// means the dense layout: q [B, Lq, Hq, D], k and v [B, Lk, Hk, D].
	CuSeqlensQ, CuSeqlensK []int
	// LSE asks for the row logsumexp (natural log) as well, fp32 [tokens, Hq].
	LSE bool
	// Tier forces a kernel tier; TierAuto picks the fastest the device supports ($VKATTN_TIER
	// overrides the automatic choice).
	Tier devices.Tier
}

// Result of Forward.
type Result struct {
	O   *memory.Tensor // same dtype and layout as q
	LSE *memory.Tensor // fp32 [tokens, Hq] (dense: [B, Lq, Hq]); nil unless Options.LSE
	// Kernel is the variant that ran, e.g. "flash_fwd_subgroup".
	Kernel string
}

// Close releases the result's tensors.
func (r *Result) Close() {
	if r != nil {
		r.O.Close()
		r.LSE.Close()
	}
}

// Forward computes attention, allocating the output (and logsumexp) tensors.
func (e *Engine) Forward(ctx context.Context, q, k, v *memory.Tensor, opts Options) (*Result, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	if q == nil {
		return nil, fmt.Errorf("attention: q is nil")
	}
	return e.newResult(q.DType, q.Shape, opts.LSE, func(o, lse *memory.Tensor) (string, error) {
		return e.ForwardInto(ctx, o, lse, q, k, v, opts)
	})
}

// newResult allocates an output of type dt and shape, and if withLSE an fp32 logsumexp of shape
// without its last dim, and fills them with into; on error it frees them.
func (e *Engine) newResult(dt memory.DType, shape []int, withLSE bool, into func(o, lse *memory.Tensor) (string, error)) (*Result, error) {
	o, err := e.NewTensor(dt, shape...)
	if err != nil {
		return nil, fmt.Errorf("attention: output: %w", err)
	}
	res := &Result{O: o}
	if withLSE {
		if res.LSE, err = e.NewTensor(memory.F32, shape[:len(shape)-1]...); err != nil {
			res.Close()
			return nil, fmt.Errorf("attention: logsumexp: %w", err)
		}
	}
	if res.Kernel, err = into(res.O, res.LSE); err != nil {
		res.Close()
		return nil, err
	}
	return res, nil
}

// ForwardInto computes attention into o (shaped and typed as q) and, if not nil, lse (fp32, q's
// shape without the head dim). It returns the kernel variant that ran.
func (e *Engine) ForwardInto(ctx context.Context, o, lse, q, k, v *memory.Tensor, opts Options) (string, error) {
	return e.run(ctx, (*Engine).planForward, o, lse, q, k, v, opts)
}

// TimeForward runs the forward warmup+iters times in one submission and returns the device time
// of each timed run (timestamp queries), and the kernel that ran.
func (e *Engine) TimeForward(ctx context.Context, o, lse, q, k, v *memory.Tensor, opts Options, warmup, iters int) ([]time.Duration, string, error) {
	return e.time(ctx, (*Engine).planForward, o, lse, q, k, v, opts, warmup, iters)
}

// shape is the validated geometry of a call.
type shape struct {
	batch, hq, hk, d int
	totalQ, totalK   int
	maxLq            int
	cuQ, cuK         []int
}

func (e *Engine) planForward(o, lse, q, k, v *memory.Tensor, opts Options) (*plan, error) {
	c, err := e.newCall(o, lse, q, k, v, opts)
	if err != nil {
		return nil, err
	}
	sh := c.sh
	_, pages := k.Pages()
	variant, t, err := e.chooseForward(c.opts.Tier, q.DType, sh.d, pages != nil)
	if err != nil {
		return nil, err
	}
	grid := [3]uint32{uint32((sh.maxLq + int(t.BR) - 1) / int(t.BR)), uint32(sh.hq), uint32(sh.batch)}
	if err := e.checkGrid(grid, [3]string{"query blocks", "query heads", "sequences"}); err != nil {
		return nil, err
	}
	sg := uint32(0)
	if t.PinSubgroup {
		sg = t.SG
	}
	pipe, err := e.variantPipeline(variant, []uint32{dtypeCode(q.DType), uint32(sh.d), t.BR, t.BC, t.WG, t.SG, t.RW}, sg)
	if err != nil {
		return nil, err
	}
	push, words := paged(k, c.push, c.seqWords())
	seq, err := e.seqLens(words)
	if err != nil {
		return nil, err
	}
	set, err := c.bind(pipe, seq)
	if err != nil {
		return nil, err
	}
	return &plan{kernel: variant.Name, steps: []step{{set: set, push: push, grid: grid}}}, nil
}

func dtypeCode(t memory.DType) uint32 {
	return map[memory.DType]uint32{memory.F32: 0, memory.F16: 1, memory.BF16: 2}[t]
}

// chooseForward picks the forward kernel and its tiles for inputs of type dt and head dim d: at
// the forced tier (Options.Tier, else $VKATTN_TIER) or, automatically, the fastest tier that runs
// them on the device. With paged K and V (a paged KV cache's views) the coopmat2 tier, whose
// tensor layouts need evenly strided tokens, is refused when forced and passed over otherwise.
func (e *Engine) chooseForward(tier devices.Tier, dt memory.DType, d int, paged bool) (*shaders.Variant, tiles, error) {
	tier, err := envTier(tier)
	if err != nil {
		return nil, tiles{}, err
	}
	if paged {
		return selectPagedForward(&e.profile, tier, dt, d)
	}
	return selectForward(&e.profile, tier, dt, d)
}

// selectPagedForward is selectForward for paged K and V, which the coopmat2 tier does not take.
func selectPagedForward(p *devices.Profile, tier devices.Tier, dt memory.DType, d int) (*shaders.Variant, tiles, error) {
	return selectKernel(p, shaders.OpForward, tier, dt, func(t devices.Tier) (tiles, error) {
		if t == devices.TierCoopMat2 {
			return tiles{}, fmt.Errorf("attention: tier %s reads K and V through tensor layouts, which take no paged K/V (a paged KV cache's views)", t)
		}
		return forwardTiles(t, p, d, dt)
	})
}

// envTier is the tier a call forces: Options.Tier, else $VKATTN_TIER, else TierAuto.
func envTier(tier devices.Tier) (devices.Tier, error) {
	if tier == devices.TierAuto {
		if env := os.Getenv(TierEnv); env != "" {
			t, err := devices.ParseTier(env)
			if err != nil {
				return devices.TierAuto, fmt.Errorf("attention: %s: %w", TierEnv, err)
			}
			return t, nil
		}
	}
	return tier, nil
}

// selectForward is chooseForward for a device profile. A forced tier that cannot run the call
// is an error that says why; the automatic choice falls back tier by tier.
func selectForward(p *devices.Profile, tier devices.Tier, dt memory.DType, d int) (*shaders.Variant, tiles, error) {
	v, t, err := selectKernel(p, shaders.OpForward, tier, dt, func(t devices.Tier) (tiles, error) { return forwardTiles(t, p, d, dt) })
	if err != nil && tier == devices.TierAuto {
		err = fmt.Errorf("attention: no forward kernel runs %s inputs with head dim %d on %s", dt, d, p.Name)
	}
	return v, t, err
}

// selectKernel picks the kernel of op for inputs of type dt at a forced tier or, for TierAuto,
// the fastest tier whose kernel runs on the device, takes dt and has tiles (tilesAt) that fit.
func selectKernel(p *devices.Profile, op shaders.Op, tier devices.Tier, dt memory.DType, tilesAt func(devices.Tier) (tiles, error)) (*shaders.Variant, tiles, error) {
	return selectKernelIn(p, op, tier, dt, autoTiers, tilesAt)
}

// selectKernelIn is selectKernel with the automatic choice trying the tiers of order, fastest
// first.
func selectKernelIn(p *devices.Profile, op shaders.Op, tier devices.Tier, dt memory.DType, order []devices.Tier, tilesAt func(devices.Tier) (tiles, error)) (*shaders.Variant, tiles, error) {
	try := func(t devices.Tier) (*shaders.Variant, tiles, error) {
		if !p.Supports(t) {
			return nil, tiles{}, fmt.Errorf("attention: tier %s is not supported by %s", t, p.Name)
		}
		v, err := shaders.ForInput(op, t, dt, p) // its errors name the tier or the kernel
		if err != nil {
			return nil, tiles{}, fmt.Errorf("attention: %w", err)
		}
		tl, err := tilesAt(t)
		if err != nil {
			return nil, tiles{}, err
		}
		return v, tl, nil
	}
	if tier != devices.TierAuto {
		if !slices.Contains(devices.Tiers, tier) {
			return nil, tiles{}, fmt.Errorf("attention: tier %s is not a tier (Options.Tier)", tier)
		}
		return try(tier)
	}
	for _, t := range order {
		if v, tl, err := try(t); err == nil {
			return v, tl, nil
		}
	}
	return nil, tiles{}, fmt.Errorf("attention: no %s kernel runs %s inputs on %s", op, dt, p.Name)
}

// autoTiers is the order the automatic choice tries tiers in, fastest first as measured
// (docs/PERF.md). The coopmat tier comes before coopmat2: on the H100, the one device measured
// with both, the coopmat2 kernel runs at about half the coopmat kernel's speed (fp16, d=128: 19
// against 42 TFLOP/s); it stays available to force (Options.Tier, $VKATTN_TIER).
var autoTiers = []devices.Tier{devices.TierCoopMat, devices.TierCoopMat2, devices.TierSubgroup, devices.TierScalar}

// arg is a tensor argument and the name errors call it by.
type arg struct {
	name string
	t    *memory.Tensor
}

// checkForward validates the tensors and options of a forward call and derives its geometry.
// Every error names the offending argument. It may replace opts.Window with an equivalent one
// whose bounds fit the kernels' 32-bit arithmetic (never the caller's Window).
func (e *Engine) checkForward(o, lse, q, k, v *memory.Tensor, opts *Options) (shape, error) {
	return e.checkOperands([]operand{floatOperand("q", q), floatOperand("k", k), floatOperand("v", v), floatOperand("o", o)}, lse, opts)
}

// checkOperands is checkForward for operands q, k, v and o (ops, in that order), any of q, k
// and v quantized; o is a float tensor.
func (e *Engine) checkOperands(ops []operand, lse *memory.Tensor, opts *Options) (shape, error) {
	var sh shape
	q, k, v, o := ops[0], ops[1], ops[2], ops[3]
	for _, a := range ops {
		if a.missing() {
			return sh, fmt.Errorf("attention: %s is nil", a.name)
		}
		if err := e.checkArgs(a.parts(), nil); err != nil {
			return sh, err
		}
	}
	if err := e.checkArgs(nil, lse); err != nil {
		return sh, err
	}
	var floats []operand // they share a dtype
	for _, a := range ops {
		if !a.quantized {
			floats = append(floats, a)
		}
	}
	for _, a := range floats[1:] {
		if a.t.DType != floats[0].t.DType {
			return sh, fmt.Errorf("attention: %s is %s but %s is %s: %s must share a dtype", a.name, a.t.DType,
				floats[0].name, floats[0].t.DType, nameList(floats))
		}
	}
	varlen := opts.CuSeqlensQ != nil || opts.CuSeqlensK != nil
	rank, layout := 4, "[batch, seq, heads, head_dim]"
	if varlen {
		rank, layout = 3, "[tokens, heads, head_dim] (varlen: CuSeqlensQ/CuSeqlensK are set)"
	}
	for _, a := range ops {
		if err := a.checkLayout(layout, rank); err != nil {
			return sh, err
		}
	}
	qs, ks, vs, os := q.shape(), k.shape(), v.shape(), o.shape()
	sh.d, sh.hq, sh.hk = qs[rank-1], qs[rank-2], ks[rank-2]
	if !slices.Contains(HeadDims, sh.d) {
		return sh, fmt.Errorf("attention: %s: head dim %d is not supported (have %v)", q.name, sh.d, HeadDims)
	}
	for _, a := range ops[1:] {
		if n := a.shape()[rank-1]; n != sh.d {
			return sh, fmt.Errorf("attention: %s has head dim %d but %s has %d", a.name, n, q.name, sh.d)
		}
	}
	if vs[rank-2] != sh.hk {
		return sh, fmt.Errorf("attention: %s has %d heads but %s has %d", v.name, vs[rank-2], k.name, sh.hk)
	}
	if sh.hq%sh.hk != 0 {
		return sh, fmt.Errorf("attention: %s has %d heads, not a multiple of %s and %s's %d", q.name, sh.hq, k.name, v.name, sh.hk)
	}
	if !slices.Equal(os, qs) {
		return sh, fmt.Errorf("attention: %s has shape %v, want %s's %v", o.name, os, q.name, qs)
	}
	if !slices.Equal(ks[:rank-1], vs[:rank-1]) {
		return sh, fmt.Errorf("attention: %s has shape %v but %s has %v: they must agree but for the head dim", v.name, vs, k.name, ks)
	}
	if varlen {
		if opts.CuSeqlensQ == nil {
			return sh, fmt.Errorf("attention: CuSeqlensQ is nil but CuSeqlensK is set: varlen needs both")
		}
		if opts.CuSeqlensK == nil {
			return sh, fmt.Errorf("attention: CuSeqlensK is nil but CuSeqlensQ is set: varlen needs both")
		}
		sh.totalQ, sh.totalK = qs[0], ks[0]
		var err error
		if sh.maxLq, err = checkCumulative("CuSeqlensQ", opts.CuSeqlensQ, sh.totalQ, q.name); err != nil {
			return sh, err
		}
		if _, err = checkCumulative("CuSeqlensK", opts.CuSeqlensK, sh.totalK, k.name); err != nil {
			return sh, err
		}
		if len(opts.CuSeqlensK) != len(opts.CuSeqlensQ) {
			return sh, fmt.Errorf("attention: CuSeqlensK has %d entries but CuSeqlensQ has %d", len(opts.CuSeqlensK), len(opts.CuSeqlensQ))
		}
		sh.batch, sh.cuQ, sh.cuK = len(opts.CuSeqlensQ)-1, opts.CuSeqlensQ, opts.CuSeqlensK
	} else {
		if ks[0] != qs[0] {
			return sh, fmt.Errorf("attention: %s has batch %d but %s has %d", k.name, ks[0], q.name, qs[0])
		}
		sh.batch, sh.maxLq = qs[0], qs[1]
		sh.totalQ, sh.totalK = sh.batch*qs[1], sh.batch*ks[1]
		sh.cuQ, sh.cuK = uniform(sh.batch, qs[1]), uniform(sh.batch, ks[1])
		for _, a := range ops {
			for _, p := range a.parts() {
				if err := checkBatchStride(p); err != nil {
					return sh, err
				}
			}
		}
	}
	var inputs []arg
	for _, a := range ops[:3] {
		inputs = append(inputs, a.parts()...)
	}
	if err := checkOutputs(o.t, lse, inputs); err != nil {
		return sh, err
	}
	if w := opts.Window; w != nil {
		if w.Left < -1 || w.Right < -1 {
			return sh, fmt.Errorf("attention: Options.Window bounds must be >= -1, got %+v", *w)
		}
		// A bound at least as long as every sequence masks nothing: unbounded, which keeps the
		// kernels' int32 arithmetic (i + Lk - Lq + Right) from overflowing.
		fit := *w
		if fit.Left >= sh.totalK {
			fit.Left = -1
		}
		if fit.Right >= sh.totalQ {
			fit.Right = -1
		}
		if fit != *w {
			opts.Window = &fit
		}
	}
	if s := float64(opts.Softcap); s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return sh, fmt.Errorf("attention: Options.Softcap must be finite and >= 0, got %v", opts.Softcap)
	}
	if s := float64(opts.Scale); math.IsNaN(s) || math.IsInf(s, 0) {
		return sh, fmt.Errorf("attention: Options.Scale must be finite, got %v", opts.Scale)
	}
	if sh.batch < 1 {
		return sh, fmt.Errorf("attention: no sequences")
	}
	return sh, nil
}

// checkArgs checks that each of args is given and that each, and lse if given, is a live tensor
// of e.
func (e *Engine) checkArgs(args []arg, lse *memory.Tensor) error {
	for _, a := range args {
		if a.t == nil {
			return fmt.Errorf("attention: %s is nil", a.name)
		}
		if err := e.owned(a.name, a.t); err != nil {
			return err
		}
	}
	if lse != nil {
		if err := e.owned("lse", lse); err != nil {
			return err
		}
	}
	return nil
}

// checkLayout checks a tensor that the kernels address by (token, head, dim): its rank (layout
// describes the shape wanted), a contiguous head dim, and for 16-bit types even offsets and
// strides, as the kernels access them in 32-bit words.
func checkLayout(a arg, layout string, rank int) error {
	if len(a.t.Shape) != rank {
		return fmt.Errorf("attention: %s has shape %v, want %s", a.name, a.t.Shape, layout)
	}
	if a.t.Strides[rank-1] != 1 {
		return fmt.Errorf("attention: %s: the head dim must be contiguous (stride %d)", a.name, a.t.Strides[rank-1])
	}
	if a.t.DType != memory.F32 && (a.t.Offset%2 != 0 || a.t.Strides[rank-2]%2 != 0 || a.t.Strides[rank-3]%2 != 0) {
		return fmt.Errorf("attention: %s: 16-bit tensors need even offsets and strides", a.name)
	}
	return nil
}

// checkBatchStride checks a dense [batch, seq, heads, head_dim] tensor: the kernels address
// tokens as start+i with one token stride, so the batch stride must be seq_len * token stride.
func checkBatchStride(a arg) error {
	if a.t.Shape[0] > 1 && a.t.Strides[0] != a.t.Shape[1]*a.t.Strides[1] {
		return fmt.Errorf("attention: %s: batch stride %d must equal seq_len*token stride %d", a.name, a.t.Strides[0], a.t.Shape[1]*a.t.Strides[1])
	}
	return nil
}

// checkOutputs checks the output o and the optional logsumexp lse (a contiguous f32 tensor of
// o's shape without the head dim, from its buffer's start, as the kernels write lse[t*Hq + h]):
// o's elements must be distinct, and neither o nor lse may share memory with an input or with
// each other (the kernels read the inputs while they write).
func checkOutputs(o, lse *memory.Tensor, inputs []arg) error {
	if lse != nil {
		want := o.Shape[:len(o.Shape)-1]
		if lse.DType != memory.F32 || !slices.Equal(lse.Shape, want) || !lse.Contiguous() {
			return fmt.Errorf("attention: lse must be a contiguous f32 tensor of shape %v, got %s %v", want, lse.DType, lse.Shape)
		}
		if lse.Offset != 0 {
			return fmt.Errorf("attention: lse must start at its buffer's beginning")
		}
	}
	if !distinct(o) {
		return fmt.Errorf("attention: o: shape %v strides %v address an element more than once", o.Shape, o.Strides)
	}
	outs := []arg{{"o", o}}
	if lse != nil {
		outs = append(outs, arg{"lse", lse})
	}
	for i, w := range outs {
		for _, r := range append(slices.Clip(inputs), outs[:i]...) {
			if overlap(w.t, r.t) {
				return fmt.Errorf("attention: %s overlaps %s in memory", w.name, r.name)
			}
		}
	}
	return nil
}

// extent is the range of bytes [lo, hi) of t's buffer that t's elements lie in.
func extent(t *memory.Tensor) (lo, hi uint64) {
	last := t.Offset
	for i, n := range t.Shape {
		last += (n - 1) * t.Strides[i]
	}
	sz := uint64(t.DType.Size())
	return uint64(t.Offset) * sz, uint64(last+1) * sz
}

// overlap reports whether a and b may share bytes: same buffer and intersecting extents.
func overlap(a, b *memory.Tensor) bool {
	if a.Buffer() != b.Buffer() {
		return false
	}
	alo, ahi := extent(a)
	blo, bhi := extent(b)
	return alo < bhi && blo < ahi
}

// distinct reports whether t's elements are all at different places: taken from the smallest
// stride up, each dimension of size > 1 must step over everything the smaller ones span.
func distinct(t *memory.Tensor) bool {
	type dim struct{ n, stride int }
	var dims []dim
	for i, n := range t.Shape {
		if n > 1 {
			dims = append(dims, dim{n, t.Strides[i]})
		}
	}
	slices.SortFunc(dims, func(a, b dim) int { return a.stride - b.stride })
	span := 0 // elements the smaller dimensions cover, minus one
	for _, d := range dims {
		if d.stride <= span {
			return false
		}
		span += (d.n - 1) * d.stride
	}
	return true
}

func (e *Engine) owned(name string, t *memory.Tensor) error {
	if t.Allocator() != e.alloc {
		return fmt.Errorf("attention: %s: %w", name, memory.ErrForeign)
	}
	if t.Closed() {
		return fmt.Errorf("attention: %s: %w", name, memory.ErrClosed)
	}
	if _, pages := t.Pages(); pages != nil && !slices.Contains(pagedNames, name) {
		return fmt.Errorf("attention: %s is a paged KV cache's view; only float k and v, and quantized k's and v's codes and scales, may be", name)
	}
	return nil
}

// pagedNames are the arguments that may be paged KV cache views: float K and V, and quantized
// K's and V's codes and scales (a paged QuantizedKVCache's views).
var pagedNames = []string{"k", "v", "k.Codes", "k.Scales", "v.Codes", "v.Scales"}

// checkCumulative checks the cumulative sequence offsets cu (named name) of a varlen tensor
// (named tensor) of total tokens and returns the longest sequence.
func checkCumulative(name string, cu []int, total int, tensor string) (maxLen int, err error) {
	if len(cu) < 2 {
		return 0, fmt.Errorf("attention: %s needs at least 2 entries, got %d", name, len(cu))
	}
	if cu[0] != 0 {
		return 0, fmt.Errorf("attention: %s[0] = %d, want 0", name, cu[0])
	}
	for i := 1; i < len(cu); i++ {
		if cu[i] < cu[i-1] {
			return 0, fmt.Errorf("attention: %s is out of order at %d: %d < %d", name, i, cu[i], cu[i-1])
		}
		if cu[i] > total {
			return 0, fmt.Errorf("attention: %s[%d] = %d is past the %d tokens of %s", name, i, cu[i], total, tensor)
		}
		maxLen = max(maxLen, cu[i]-cu[i-1])
	}
	if cu[len(cu)-1] != total {
		return 0, fmt.Errorf("attention: %s ends at %d but %s has %d tokens", name, cu[len(cu)-1], tensor, total)
	}
	if maxLen == 0 {
		return 0, fmt.Errorf("attention: %s: every sequence is empty", name)
	}
	return maxLen, nil
}

func uniform(batch, n int) []int {
	cu := make([]int, batch+1)
	for i := range cu {
		cu[i] = i * n
	}
	return cu
}
