package attention

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/shaders"
	"github.com/vkattn/vkattn/vk"
)

// call is a validated attention call: its geometry and the push constants and buffers that every
// attention kernel takes (shaders/glsl/params.glsl, tensors.glsl).
type call struct {
	sh         shape
	opts       Options
	q, k, v, o *memory.Tensor
	lse        *memory.Buffer // o's buffer, never written, when no logsumexp is asked for
	flags      uint32         // the flags push constant
	push       []byte
	// groups, for a call over KV cache sequences (DecodeCache), are where their keys and values
	// lie: one dispatch each (dispatches); k and v are then one of them, standing in for checks.
	groups []memory.KVGroup
	// scaleGroups, for a call over a QuantizedKVCache's sequences (DecodeQuantizedCache), are
	// where the scales of each group's sequences lie, groups holding their codes.
	scaleGroups []scaleGroup
	// after are binds to wait for besides those of q, k, v and o (memory.BindPoints of the
	// primary tensors): a quantized K's and V's scales, which may be views of a KV cache too
	// (QuantizedKVCache).
	after []vk.TimelinePoint
	// scales, for a quantized call, are K's scales, whose block table (V's scales share it) the
	// dispatch's sequence table carries where they are paged (scalePages); nil otherwise.
	scales *memory.Tensor
}

// newCall validates the tensors and options of a forward-shaped call.
func (e *Engine) newCall(o, lse, q, k, v *memory.Tensor, opts Options) (*call, error) {
	return e.newCallOf([]operand{floatOperand("q", q), floatOperand("k", k), floatOperand("v", v), floatOperand("o", o)}, lse, opts)
}

// newCallOf validates a call of operands q, k, v and o (in that order, see checkOperands); the
// push constants carry the strides and offsets of each one's primary tensor.
func (e *Engine) newCallOf(ops []operand, lse *memory.Tensor, opts Options) (*call, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	sh, err := e.checkOperands(ops, lse, &opts)
	if err != nil {
		return nil, err
	}
	q, k, v, o := ops[0].primary(), ops[1].primary(), ops[2].primary(), ops[3].primary()
	if err := checkPaged(k, v); err != nil {
		return nil, err
	}
	c := &call{sh: sh, opts: opts, q: q, k: k, v: v, o: o, lse: o.Buffer()}
	flags := uint32(0)
	if lse != nil {
		c.lse, flags = lse.Buffer(), flagWriteLSE // checkOutputs: it starts at its buffer's start
	}
	c.flags = flags
	wl, wr := -1, -1
	if opts.Window != nil {
		wl, wr = opts.Window.Left, opts.Window.Right
	}
	if opts.Causal {
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
	c.push = pushWords(uint32(sh.batch), uint32(sh.hq), uint32(sh.hk), flags,
		math.Float32bits(scale), math.Float32bits(opts.Softcap), uint32(int32(wl)), uint32(int32(wr)),
		qts, qhs, kts, khs, vts, vhs, ots, ohs,
		uint32(q.Offset), uint32(k.Offset), uint32(v.Offset), uint32(o.Offset))
	return c, nil
}

// Push-constant words of the attention kernels (shaders/glsl/params.glsl), by index, and flags.
const (
	pushNSeq, pushHq, pushHk, pushFlags = 0, 1, 2, 3
	pushOTokenStride, pushOHeadStride   = 14, 15
	pushKTokenStride                    = 10 // then kHeadStride, vTokenStride, vHeadStride
	pushQOff, pushKOff, pushOOff        = 16, 17, 19

	flagWriteLSE = 1  // FLAG_WRITE_LSE
	flagPaged    = 16 // FLAG_PAGED
)

// paged returns the push constants and sequence table of a dispatch over K and V (k standing for
// both), as they are where K and V are not paged; where they are (memory.Tensor.Pages), the block
// table follows words, and push has FLAG_PAGED, kOff the table's first word and vOff the tokens
// per page (tensors.glsl).
func paged(k *memory.Tensor, push []byte, words []uint32) ([]byte, []uint32) {
	pt, pages := k.Pages()
	if pages == nil {
		return push, words
	}
	at := len(words)
	flags := binary.LittleEndian.Uint32(push[4*pushFlags:]) | flagPaged
	return withPush(push, pushFlags, flags, pushKOff, uint32(at), pushKOff+1, uint32(pt)), append(slices.Clip(words), pages...)
}

// checkPaged checks that k and v are both paged or neither, with one block table (the kernels
// read both through it); Engine.owned refuses paged tensors as anything but k and v (float, or
// a quantized one's codes and scales, checkPagedScales).
func checkPaged(k, v *memory.Tensor) error {
	kt, kp := k.Pages()
	vt, vp := v.Pages()
	if (kp == nil) != (vp == nil) || kt != vt || !slices.Equal(kp, vp) {
		return fmt.Errorf("attention: k and v must both be views of the same paged KV cache sequences, or neither paged")
	}
	return nil
}

// pushWords encodes push constants.
func pushWords(vals ...uint32) []byte {
	b := make([]byte, 4*len(vals))
	for i, x := range vals {
		binary.LittleEndian.PutUint32(b[4*i:], x)
	}
	return b
}

// withPush returns a copy of push with the given words (index, value pairs) replaced.
func withPush(push []byte, words ...uint32) []byte {
	out := slices.Clone(push)
	for i := 0; i+1 < len(words); i += 2 {
		binary.LittleEndian.PutUint32(out[4*words[i]:], words[i+1])
	}
	return out
}

// seqWords are the kernels' sequence table (binding 5): CuSeqlensQ, CuSeqlensK, then extra.
func (c *call) seqWords(extra ...uint32) []uint32 {
	words := make([]uint32, 0, len(c.sh.cuQ)+len(c.sh.cuK)+len(extra))
	for _, x := range c.sh.cuQ {
		words = append(words, uint32(x))
	}
	for _, x := range c.sh.cuK {
		words = append(words, uint32(x))
	}
	return append(words, extra...)
}

// bind makes a descriptor set of pipe with q, k, v, o, lse and seq at bindings 0-5 and extra
// after them. Its dispatches wait for the binds of KV cache pages that the tensors may still need
// (memory.BindPoints).
func (c *call) bind(pipe *vk.Pipeline, seq *memory.Buffer, extra ...vk.BufferRange) (*vk.DescriptorSet, error) {
	return c.bindKV(pipe, c.k.Buffer(), c.v.Buffer(), vk.BufferRange{Buffer: seq.Buffer}, append(memory.BindPoints(c.q, c.k, c.v, c.o), c.after...), extra...)
}

// bindKV is bind with K and V in buffers k and v, the sequence table at seq, waiting for after.
func (c *call) bindKV(pipe *vk.Pipeline, k, v *memory.Buffer, seq vk.BufferRange, after []vk.TimelinePoint, extra ...vk.BufferRange) (*vk.DescriptorSet, error) {
	ranges := append([]vk.BufferRange{
		{Buffer: c.q.Buffer().Buffer}, {Buffer: k.Buffer}, {Buffer: v.Buffer},
		{Buffer: c.o.Buffer().Buffer}, {Buffer: c.lse.Buffer}, seq}, extra...)
	set, err := pipe.NewDescriptorSet(ranges...)
	if err == nil {
		set.After(after...)
	}
	return set, err
}

// checkGrid reports a grid dimension over the device's workgroup count limits; names say what
// each dimension counts.
func (e *Engine) checkGrid(grid [3]uint32, names [3]string) error {
	lim := e.profile.MaxWorkgroupCount
	for i, n := range names {
		if grid[i] > lim[i] {
			return fmt.Errorf("attention: %d %s exceed the device's %d workgroups in dimension %d", grid[i], n, lim[i], i)
		}
	}
	return nil
}

// variantPipeline returns the (cached) pipeline of a variant with the given specialization
// constants; subgroupSize, if nonzero, is required of the driver.
func (e *Engine) variantPipeline(v *shaders.Variant, spec []uint32, subgroupSize uint32) (*vk.Pipeline, error) {
	ps := vk.PipelineSpec{Name: v.Name, Bindings: v.Bindings, PushSize: v.PushSize, Specialization: spec,
		SubgroupSize: subgroupSize}
	var err error
	if ps.SPIRV, err = v.SPIRV(); err != nil {
		return nil, err
	}
	pipe, err := e.pipeline(ps)
	if err != nil {
		return nil, fmt.Errorf("attention: %w", err)
	}
	return pipe, nil
}

// planner validates a call and plans its dispatches (planForward, planNaive).
type planner func(e *Engine, o, lse, q, k, v *memory.Tensor, opts Options) (*plan, error)

// run plans a call under the engine's lock and runs it once; it returns the kernel that ran.
func (e *Engine) run(ctx context.Context, build planner, o, lse, q, k, v *memory.Tensor, opts Options) (string, error) {
	return e.runBuilt(ctx, func() (*plan, error) { return build(e, o, lse, q, k, v, opts) })
}

// time plans a call under the engine's lock and times warmup+iters runs of it.
func (e *Engine) time(ctx context.Context, build planner, o, lse, q, k, v *memory.Tensor, opts Options, warmup, iters int) ([]time.Duration, string, error) {
	return e.timeBuilt(ctx, func() (*plan, error) { return build(e, o, lse, q, k, v, opts) }, warmup, iters)
}

// runBuilt is run for any call: build validates and plans it (under the engine's lock).
func (e *Engine) runBuilt(ctx context.Context, build func() (*plan, error)) (string, error) {
	if e == nil {
		return "", ErrClosed
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := build()
	if err != nil {
		return "", err
	}
	return e.runPlan(ctx, p)
}

// timeBuilt is time for any call: build validates and plans it (under the engine's lock).
func (e *Engine) timeBuilt(ctx context.Context, build func() (*plan, error), warmup, iters int) ([]time.Duration, string, error) {
	if err := checkTiming(warmup, iters); err != nil {
		return nil, "", err
	}
	if e == nil {
		return nil, "", ErrClosed
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := build()
	if err != nil {
		return nil, "", err
	}
	return e.timePlan(ctx, p, warmup, iters)
}

// plan is work ready to record: dispatches in order, with barriers between them, and the scratch
// buffers they use: their own (scratch, freed with the plan) or the engine's pool's (pooled,
// handed back to pool).
type plan struct {
	kernel  string // what Run and Time report
	steps   []step
	scratch []*memory.Buffer
	pooled  []*memory.Buffer
	pool    *scratchPool
}

type step struct {
	set  *vk.DescriptorSet
	push []byte
	grid [3]uint32
	join bool // runs beside the step before it: no barrier between them
}

// record records the plan's dispatches; between its steps, which are all dispatches, a barrier
// over compute shaders only.
func (p *plan) record(c *vk.Commands) {
	for i, s := range p.steps {
		if i > 0 && !s.join {
			c.ComputeBarrier()
		}
		c.Dispatch(s.set, s.push, s.grid[0], s.grid[1], s.grid[2])
	}
}

// close frees what the plan holds; the engine's lock is held (the pool).
func (p *plan) close() {
	for _, s := range p.steps {
		s.set.Close()
	}
	for _, b := range p.scratch {
		b.Close()
	}
	for _, b := range p.pooled {
		p.pool.put(b)
	}
}

// runPlan records the plan once, submits it and waits; it closes the plan. e.mu must be held.
// A full barrier first makes what earlier submissions wrote, transfers included (uploads end
// without one), visible to the plan's dispatches, between which record puts compute barriers
// only.
func (e *Engine) runPlan(ctx context.Context, p *plan) (string, error) {
	defer p.close()
	err := e.dev.Run(ctx, func(c *vk.Commands) error {
		c.Barrier()
		p.record(c)
		c.HostBarrier()
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("attention: %s: %w", p.kernel, err)
	}
	return p.kernel, nil
}

// timePlan records the plan warmup+iters times in one submission and returns the device time of
// each timed run; it closes the plan. e.mu must be held.
func (e *Engine) timePlan(ctx context.Context, p *plan, warmup, iters int) ([]time.Duration, string, error) {
	defer p.close()
	qp, err := e.dev.NewTimestamps(uint32(2 * iters))
	if err != nil {
		return nil, "", err
	}
	defer qp.Close()
	err = e.dev.Run(ctx, func(c *vk.Commands) error {
		c.ResetQueries(qp)
		c.Barrier() // as runPlan's
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
		return nil, "", fmt.Errorf("attention: %s: %w", p.kernel, err)
	}
	times := make([]time.Duration, iters)
	for i := range times {
		if times[i], err = qp.Elapsed(uint32(2*i), uint32(2*i+1)); err != nil {
			return nil, "", err
		}
	}
	return times, p.kernel, nil
}

// checkTiming validates TimeForward's and TimeNaive's run counts.
func checkTiming(warmup, iters int) error {
	if iters < 1 || warmup < 0 {
		return fmt.Errorf("attention: iters must be >= 1 and warmup >= 0")
	}
	return nil
}
