package attention

import (
	"context"
	"fmt"
	"time"

	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/shaders"
	"github.com/vkattn/vkattn/vk"
)

// NaiveKernel is the kernel name NaiveForwardInto and TimeNaive report.
const NaiveKernel = "naive"

// NaiveForwardInto computes what ForwardInto does the unfused way, as the baseline that the
// FlashAttention kernels are measured against: the fp32 score matrix S (Hq x Lq x Lk floats per
// sequence) is written to a scratch buffer, softmax-normalized in place, then multiplied by V.
// S must fit the device's maxStorageBufferRange. Options.Tier is ignored: the naive kernels run
// at the scalar tier. It returns NaiveKernel.
func (e *Engine) NaiveForwardInto(ctx context.Context, o, lse, q, k, v *memory.Tensor, opts Options) (string, error) {
	return e.run(ctx, (*Engine).planNaive, o, lse, q, k, v, opts)
}

// TimeNaive is TimeForward for NaiveForwardInto: the device time of each of iters runs (the
// three passes) after warmup runs, in one submission.
func (e *Engine) TimeNaive(ctx context.Context, o, lse, q, k, v *memory.Tensor, opts Options, warmup, iters int) ([]time.Duration, string, error) {
	return e.time(ctx, (*Engine).planNaive, o, lse, q, k, v, opts, warmup, iters)
}

// naiveTiles picks the tile edge t of the naive kernels (t x t invocations) for head dim d: 16
// where the workgroup and shared memory limits allow, else smaller.
func naiveTiles(p *devices.Profile, d int) (t uint32, err error) {
	maxWG := min(p.MaxWorkgroupInvocations, p.MaxWorkgroupSize[0])
	for t = 16; t >= 2; t /= 2 {
		// Shared floats of the largest pass, NAIVE_PV: a padded P tile and a V tile (naive.comp).
		shared := 4 * (t*(t+1) + t*uint32(d))
		if t*t <= maxWG && shared <= p.MaxSharedMemory && uint32(d)%t == 0 {
			return t, nil
		}
	}
	return 0, fmt.Errorf("attention: naive: head dim %d does not fit %d bytes of shared memory and %d invocations",
		d, p.MaxSharedMemory, maxWG)
}

// scoresLayout returns the float offset of each sequence's score matrices in S (Hq x lq x lk
// floats per sequence; one more entry for the end), the most T x T tiles of one matrix, and a
// description of S for errors.
func scoresLayout(sh shape, t int) (offs []uint64, tiles int, desc string) {
	offs = make([]uint64, sh.batch+1)
	uniform := true
	for b := 0; b < sh.batch; b++ {
		lq, lk := sh.cuQ[b+1]-sh.cuQ[b], sh.cuK[b+1]-sh.cuK[b]
		offs[b+1] = offs[b] + uint64(sh.hq)*uint64(lq)*uint64(lk)
		tiles = max(tiles, (lq+t-1)/t*((lk+t-1)/t))
		uniform = uniform && lq == sh.cuQ[1] && lk == sh.cuK[1]
	}
	if uniform {
		desc = fmt.Sprintf("[%d, %d, %d, %d]", sh.batch, sh.hq, sh.cuQ[1], sh.cuK[1])
	} else {
		desc = fmt.Sprintf("of %d sequences x %d heads, %d query-key pairs per head", sh.batch, sh.hq, offs[sh.batch]/uint64(sh.hq))
	}
	return offs, tiles, desc
}

func (e *Engine) planNaive(o, lse, q, k, v *memory.Tensor, opts Options) (_ *plan, err error) {
	c, err := e.newCall(o, lse, q, k, v, opts)
	if err != nil {
		return nil, err
	}
	sh := c.sh
	if !e.profile.Supports(devices.TierScalar) {
		return nil, fmt.Errorf("attention: naive: %s runs no scalar kernels", e.profile.Name)
	}
	t, err := naiveTiles(&e.profile, sh.d)
	if err != nil {
		return nil, err
	}
	offs, tiles, desc := scoresLayout(sh, int(t))
	bytes := 4 * offs[sh.batch]
	if lim := uint64(e.profile.MaxStorageBufferRange); bytes > lim {
		return nil, fmt.Errorf("attention: naive: the score matrix S %s (fp32) is %d bytes, over the device's maxStorageBufferRange of %d",
			desc, bytes, lim)
	}
	if dl := e.profile.DeviceLocalBytes(); dl > 0 && bytes > dl {
		return nil, fmt.Errorf("attention: naive: the score matrix S %s (fp32) is %d bytes, over the device's %d bytes of memory",
			desc, bytes, dl)
	}
	lim := e.profile.MaxWorkgroupCount
	grids := map[shaders.Op][3]uint32{
		shaders.OpNaiveScores:  {uint32(min(max(tiles, 1), int(lim[0]))), uint32(sh.hq), uint32(sh.batch)},
		shaders.OpNaiveSoftmax: {uint32(min(sh.maxLq, int(lim[0]))), uint32(sh.hq), uint32(sh.batch)},
		shaders.OpNaivePV:      {uint32(min((sh.maxLq+int(t)-1)/int(t), int(lim[0]))), uint32(sh.hq), uint32(sh.batch)},
	}
	// Blocks beyond the grid's width are looped over (naive.comp); heads and sequences are not.
	if err := e.checkGrid(grids[shaders.OpNaivePV], [3]string{"query blocks", "query heads", "sequences"}); err != nil {
		return nil, err
	}

	p := &plan{kernel: NaiveKernel}
	defer func() {
		if err != nil {
			p.close()
		}
	}()
	s, err := e.alloc.NewBuffer(max(bytes, 4), memory.DeviceLocal)
	if err != nil {
		return nil, fmt.Errorf("attention: naive: the score matrix S %s (fp32, %d bytes): %w", desc, bytes, err)
	}
	p.scratch = append(p.scratch, s)
	extra := make([]uint32, len(offs))
	for i, x := range offs {
		extra[i] = uint32(x) // < 2^30: S fits maxStorageBufferRange
	}
	push, words := paged(k, c.push, c.seqWords(extra...))
	seq, err := e.seqLens(words)
	if err != nil {
		return nil, err
	}
	for _, op := range []shaders.Op{shaders.OpNaiveScores, shaders.OpNaiveSoftmax, shaders.OpNaivePV} {
		variant, err := shaders.ForTier(op, devices.TierScalar)
		if err != nil {
			return nil, err
		}
		pipe, err := e.variantPipeline(variant, []uint32{dtypeCode(q.DType), uint32(sh.d), t, t * t}, 0)
		if err != nil {
			return nil, err
		}
		set, err := c.bind(pipe, seq, vk.BufferRange{Buffer: s.Buffer})
		if err != nil {
			return nil, err
		}
		p.steps = append(p.steps, step{set: set, push: push, grid: grids[op]})
	}
	return p, nil
}
