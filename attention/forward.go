package attention

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/shaders"
	"github.com/vkattn/vkattn/vk"
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
	o, err := e.NewTensor(q.DType, q.Shape...)
	if err != nil {
		return nil, fmt.Errorf("attention: output: %w", err)
	}
	res := &Result{O: o}
	if opts.LSE {
		if res.LSE, err = e.NewTensor(memory.F32, q.Shape[:len(q.Shape)-1]...); err != nil {
			res.Close()
			return nil, fmt.Errorf("attention: logsumexp: %w", err)
		}
	}
	if res.Kernel, err = e.ForwardInto(ctx, res.O, res.LSE, q, k, v, opts); err != nil {
		res.Close()
		return nil, err
	}
	return res, nil
}

// ForwardInto computes attention into o (shaped and typed as q) and, if not nil, lse (fp32, q's
// shape without the head dim). It returns the kernel variant that ran.
func (e *Engine) ForwardInto(ctx context.Context, o, lse, q, k, v *memory.Tensor, opts Options) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := e.planForward(o, lse, q, k, v, opts)
	if err != nil {
		return "", err
	}
	defer p.close()
	err = e.dev.Run(ctx, func(c *vk.Commands) error {
		p.record(c)
		c.HostBarrier()
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("attention: %s: %w", p.variant.Name, err)
	}
	return p.variant.Name, nil
}

// TimeForward runs the forward warmup+iters times in one submission and returns the device time
// of each timed run (timestamp queries), and the kernel that ran.
func (e *Engine) TimeForward(ctx context.Context, o, lse, q, k, v *memory.Tensor, opts Options, warmup, iters int) ([]time.Duration, string, error) {
	if iters < 1 || warmup < 0 {
		return nil, "", fmt.Errorf("attention: iters must be >= 1 and warmup >= 0")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := e.planForward(o, lse, q, k, v, opts)
	if err != nil {
		return nil, "", err
	}
	defer p.close()
	qp, err := e.dev.NewTimestamps(uint32(2 * iters))
	if err != nil {
		return nil, "", err
	}
	defer qp.Close()
	err = e.dev.Run(ctx, func(c *vk.Commands) error {
		c.ResetQueries(qp)
		for i := 0; i < warmup; i++ {
			p.record(c)
			c.Barrier()
		}
		for i := 0; i < iters; i++ {
			c.Timestamp(qp, uint32(2*i))
			p.record(c)
			c.Barrier()
			c.Timestamp(qp, uint32(2*i+1))
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("attention: %s: %w", p.variant.Name, err)
	}
	times := make([]time.Duration, iters)
	for i := range times {
		if times[i], err = qp.Elapsed(uint32(2*i), uint32(2*i+1)); err != nil {
			return nil, "", err
		}
	}
	return times, p.variant.Name, nil
}

// shape is the validated geometry of a call.
type shape struct {
	batch, hq, hk, d int
	totalQ, totalK   int
	maxLq            int
	cuQ, cuK         []int
}

// forwardPlan is a validated call: the pipeline, bound buffers, push constants and grid.
type forwardPlan struct {
	variant *shaders.Variant
	set     *vk.DescriptorSet
	push    []byte
	grid    [3]uint32
}

func (p *forwardPlan) record(c *vk.Commands) { c.Dispatch(p.set, p.push, p.grid[0], p.grid[1], p.grid[2]) }
func (p *forwardPlan) close()                { p.set.Close() }

func (e *Engine) planForward(o, lse, q, k, v *memory.Tensor, opts Options) (*forwardPlan, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	sh, err := e.checkForward(o, lse, q, k, v, &opts)
	if err != nil {
		return nil, err
	}
	variant, err := e.chooseForward(opts.Tier)
	if err != nil {
		return nil, err
	}
	t, err := forwardTiles(variant.Tier, &e.profile, sh.d)
	if err != nil {
		return nil, err
	}
	grid := [3]uint32{uint32((sh.maxLq + int(t.BR) - 1) / int(t.BR)), uint32(sh.hq), uint32(sh.batch)}
	lim := e.profile.MaxWorkgroupCount
	for i, n := range []string{"query blocks", "query heads", "sequences"} {
		if grid[i] > lim[i] {
			return nil, fmt.Errorf("attention: %d %s exceed the device's %d workgroups in dimension %d", grid[i], n, lim[i], i)
		}
	}
	spec := vk.PipelineSpec{Name: variant.Name, Bindings: variant.Bindings, PushSize: variant.PushSize,
		Specialization: []uint32{dtypeCode(q.DType), uint32(sh.d), t.BR, t.BC, t.WG, t.SG}}
	if t.PinSubgroup {
		spec.SubgroupSize = t.SG
	}
	if spec.SPIRV, err = variant.SPIRV(); err != nil {
		return nil, err
	}
	pipe, err := e.pipeline(spec)
	if err != nil {
		return nil, fmt.Errorf("attention: %w", err)
	}
	words := make([]uint32, 0, 2*len(sh.cuQ))
	for _, x := range sh.cuQ {
		words = append(words, uint32(x))
	}
	for _, x := range sh.cuK {
		words = append(words, uint32(x))
	}
	seq, err := e.seqLens(words)
	if err != nil {
		return nil, err
	}
	lseBuf := o.Buffer() // bound but never written when no logsumexp is asked for
	flags := uint32(0)
	if lse != nil {
		lseBuf, flags = lse.Buffer(), 1
	}
	set, err := pipe.NewDescriptorSet(
		vk.BufferRange{Buffer: q.Buffer().Buffer}, vk.BufferRange{Buffer: k.Buffer().Buffer},
		vk.BufferRange{Buffer: v.Buffer().Buffer}, vk.BufferRange{Buffer: o.Buffer().Buffer},
		vk.BufferRange{Buffer: lseBuf.Buffer}, vk.BufferRange{Buffer: seq.Buffer})
	if err != nil {
		return nil, err
	}
	if lse != nil {
		// The kernel writes lse[t*Hq + h] from the buffer's start.
		if lse.Offset != 0 {
			set.Close()
			return nil, fmt.Errorf("attention: lse must start at its buffer's beginning")
		}
	}
	wl, wr := -1, -1
	if opts.Window != nil {
		wl, wr = opts.Window.Left, opts.Window.Right
	}
	if opts.Causal && (wr < 0 || wr > 0) {
		wr = 0
	}
	scale := opts.Scale
	if scale == 0 {
		scale = float32(1 / math.Sqrt(float64(sh.d)))
	}
	rs := func(t *memory.Tensor) (uint32, uint32) { // token and head strides
		n := len(t.Strides)
		return uint32(t.Strides[n-3]), uint32(t.Strides[n-2])
	}
	qts, qhs := rs(q)
	kts, khs := rs(k)
	vts, vhs := rs(v)
	ots, ohs := rs(o)
	vals := []uint32{uint32(sh.batch), uint32(sh.hq), uint32(sh.hk), flags,
		math.Float32bits(scale), math.Float32bits(opts.Softcap), uint32(int32(wl)), uint32(int32(wr)),
		qts, qhs, kts, khs, vts, vhs, ots, ohs,
		uint32(q.Offset), uint32(k.Offset), uint32(v.Offset), uint32(o.Offset)}
	push := make([]byte, 4*len(vals))
	for i, x := range vals {
		binary.LittleEndian.PutUint32(push[4*i:], x)
	}
	return &forwardPlan{variant: variant, set: set, push: push, grid: grid}, nil
}

func dtypeCode(t memory.DType) uint32 {
	return map[memory.DType]uint32{memory.F32: 0, memory.F16: 1, memory.BF16: 2}[t]
}

// chooseForward picks the forward variant: the forced tier, else $VKATTN_TIER, else the fastest.
func (e *Engine) chooseForward(tier devices.Tier) (*shaders.Variant, error) {
	if tier == devices.TierAuto {
		if env := os.Getenv(TierEnv); env != "" {
			t, err := devices.ParseTier(env)
			if err != nil {
				return nil, fmt.Errorf("attention: %s: %w", TierEnv, err)
			}
			tier = t
		}
	}
	if tier == devices.TierAuto {
		return shaders.Best(shaders.OpForward, &e.profile, devices.TierCoopMat2)
	}
	if !e.profile.Supports(tier) {
		return nil, fmt.Errorf("attention: tier %s is not supported by %s", tier, e.profile.Name)
	}
	return shaders.ForTier(shaders.OpForward, tier)
}

// checkForward validates the tensors and options of a forward call and derives its geometry.
func (e *Engine) checkForward(o, lse, q, k, v *memory.Tensor, opts *Options) (shape, error) {
	var sh shape
	for _, a := range []struct {
		name string
		t    *memory.Tensor
	}{{"q", q}, {"k", k}, {"v", v}, {"o", o}} {
		if a.t == nil {
			return sh, fmt.Errorf("attention: %s is nil", a.name)
		}
		if err := e.owned(a.name, a.t); err != nil {
			return sh, err
		}
	}
	if lse != nil {
		if err := e.owned("lse", lse); err != nil {
			return sh, err
		}
	}
	if k.DType != q.DType || v.DType != q.DType || o.DType != q.DType {
		return sh, fmt.Errorf("attention: dtypes differ: q %s, k %s, v %s, o %s", q.DType, k.DType, v.DType, o.DType)
	}
	varlen := opts.CuSeqlensQ != nil || opts.CuSeqlensK != nil
	rank := 4
	if varlen {
		rank = 3
	}
	for _, a := range []struct {
		name string
		t    *memory.Tensor
	}{{"q", q}, {"k", k}, {"v", v}, {"o", o}} {
		if len(a.t.Shape) != rank {
			layout := "[batch, seq, heads, head_dim]"
			if varlen {
				layout = "[tokens, heads, head_dim] (varlen)"
			}
			return sh, fmt.Errorf("attention: %s has shape %v, want %s", a.name, a.t.Shape, layout)
		}
		if a.t.Strides[rank-1] != 1 {
			return sh, fmt.Errorf("attention: %s: the head dim must be contiguous (stride %d)", a.name, a.t.Strides[rank-1])
		}
		if q.DType != memory.F32 && (a.t.Offset%2 != 0 || a.t.Strides[rank-2]%2 != 0 || a.t.Strides[rank-3]%2 != 0) {
			return sh, fmt.Errorf("attention: %s: 16-bit tensors need even offsets and strides", a.name)
		}
	}
	sh.d, sh.hq, sh.hk = q.Shape[rank-1], q.Shape[rank-2], k.Shape[rank-2]
	if !slices.Contains(HeadDims, sh.d) {
		return sh, fmt.Errorf("attention: head dim %d is not supported (have %v)", sh.d, HeadDims)
	}
	if k.Shape[rank-1] != sh.d || v.Shape[rank-1] != sh.d {
		return sh, fmt.Errorf("attention: head dims differ: q %d, k %d, v %d", sh.d, k.Shape[rank-1], v.Shape[rank-1])
	}
	if v.Shape[rank-2] != sh.hk {
		return sh, fmt.Errorf("attention: k has %d heads but v has %d", sh.hk, v.Shape[rank-2])
	}
	if sh.hq%sh.hk != 0 {
		return sh, fmt.Errorf("attention: q heads %d is not a multiple of k/v heads %d", sh.hq, sh.hk)
	}
	if !slices.Equal(o.Shape, q.Shape) {
		return sh, fmt.Errorf("attention: o has shape %v, want q's %v", o.Shape, q.Shape)
	}
	if !slices.Equal(k.Shape[:rank-1], v.Shape[:rank-1]) {
		return sh, fmt.Errorf("attention: k shape %v and v shape %v differ", k.Shape, v.Shape)
	}
	if varlen {
		if opts.CuSeqlensQ == nil || opts.CuSeqlensK == nil {
			return sh, fmt.Errorf("attention: varlen needs both CuSeqlensQ and CuSeqlensK")
		}
		sh.totalQ, sh.totalK = q.Shape[0], k.Shape[0]
		var err error
		if sh.maxLq, err = checkCumulative("CuSeqlensQ", opts.CuSeqlensQ, sh.totalQ); err != nil {
			return sh, err
		}
		if _, err = checkCumulative("CuSeqlensK", opts.CuSeqlensK, sh.totalK); err != nil {
			return sh, err
		}
		if len(opts.CuSeqlensK) != len(opts.CuSeqlensQ) {
			return sh, fmt.Errorf("attention: CuSeqlensQ has %d entries but CuSeqlensK has %d", len(opts.CuSeqlensQ), len(opts.CuSeqlensK))
		}
		sh.batch, sh.cuQ, sh.cuK = len(opts.CuSeqlensQ)-1, opts.CuSeqlensQ, opts.CuSeqlensK
	} else {
		if k.Shape[0] != q.Shape[0] {
			return sh, fmt.Errorf("attention: batch sizes differ: q %d, k %d", q.Shape[0], k.Shape[0])
		}
		sh.batch, sh.maxLq = q.Shape[0], q.Shape[1]
		sh.totalQ, sh.totalK = sh.batch*q.Shape[1], sh.batch*k.Shape[1]
		sh.cuQ, sh.cuK = uniform(sh.batch, q.Shape[1]), uniform(sh.batch, k.Shape[1])
		// The kernel addresses tokens as start+i with one token stride: the batch stride must be
		// seq_len * token stride.
		for _, a := range []struct {
			name string
			t    *memory.Tensor
		}{{"q", q}, {"k", k}, {"v", v}, {"o", o}} {
			if a.t.Shape[0] > 1 && a.t.Strides[0] != a.t.Shape[1]*a.t.Strides[1] {
				return sh, fmt.Errorf("attention: %s: batch stride %d must equal seq_len*token stride %d", a.name, a.t.Strides[0], a.t.Shape[1]*a.t.Strides[1])
			}
		}
	}
	if lse != nil {
		want := q.Shape[:rank-1]
		if lse.DType != memory.F32 || !slices.Equal(lse.Shape, want) || !lse.Contiguous() {
			return sh, fmt.Errorf("attention: lse must be a contiguous f32 tensor of shape %v, got %s %v", want, lse.DType, lse.Shape)
		}
	}
	if w := opts.Window; w != nil && (w.Left < -1 || w.Right < -1) {
		return sh, fmt.Errorf("attention: window bounds must be >= -1, got %+v", *w)
	}
	if s := float64(opts.Softcap); s < 0 || math.IsNaN(s) || math.IsInf(s, 0) {
		return sh, fmt.Errorf("attention: softcap must be finite and >= 0, got %v", opts.Softcap)
	}
	if s := float64(opts.Scale); math.IsNaN(s) || math.IsInf(s, 0) {
		return sh, fmt.Errorf("attention: scale must be finite, got %v", opts.Scale)
	}
	if sh.batch < 1 {
		return sh, fmt.Errorf("attention: no sequences")
	}
	return sh, nil
}

func (e *Engine) owned(name string, t *memory.Tensor) error {
	if t.Allocator() != e.alloc {
		return fmt.Errorf("attention: %s: %w", name, memory.ErrForeign)
	}
	if t.Closed() {
		return fmt.Errorf("attention: %s: %w", name, memory.ErrClosed)
	}
	return nil
}

func checkCumulative(name string, cu []int, total int) (maxLen int, err error) {
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
		maxLen = max(maxLen, cu[i]-cu[i-1])
	}
	if cu[len(cu)-1] != total {
		return 0, fmt.Errorf("attention: %s ends at %d but the tensor has %d tokens", name, cu[len(cu)-1], total)
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
