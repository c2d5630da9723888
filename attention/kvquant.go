package attention

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/quant"
)

// QuantizedKVCache is a KV cache whose sequences' keys and values are kept quantized, as
// DecodeQuantized reads them: Int8 or Int4 codes and bf16 scales (package quant's layouts),
// appended from float tensors on the device (Quantize, bit for bit quant.Quantize) and read back
// as Quantized tensors (View).
//
// It is two memory.KVCache of one configuration but for the dtype and head dim: one holds the
// codes, D/PerWord 32-bit words per token and head in an f32 cache (the kernels read their bits,
// never their values), the other the scales, Groups(D) bf16 values per token and head, in a bf16
// cache made with KVCacheConfig.Unpaired, since Int8 has one scale per token and head and the
// kernels address scales one by one. A sequence has the same length in both: an append that
// fails in either leaves both as they were (AppendTensorsBatch), so that no sequence is ever
// seen half-appended. Close waits for appends in flight.
//
// Both caches take the layout memory.KVCache takes on the device (sparse residency, or paged with
// KVCacheConfig.Paged or where the device lacks it), the same for both. KVCacheConfig's page
// settings (ChunkPages, MaxPages, PageTokens) apply to each cache on its own: MaxPages bounds
// the codes' pages and, apart, the scales'. SparePages is the codes'; the scales keep
// spare pages in proportion to a token's bytes. Headroom is the codes': each sequence's scales are
// committed as far as its codes are (past the tokens appended, where the pool has pages), by the
// appends (and Reserve) that commit the codes, so the two caches bind pages in the same steps.
//
// With QuantizedKVCacheOptions.KeyScales (RoPE-aware key scaling), every append multiplies the
// keys, not the values, by the key scales before quantizing them (QuantizeOptions.Scales): the
// cache holds quant.Quantize(f, ks.ScaleKeys(k)). Decoding over it then needs the query side,
// QuantizedDecodeOptions.QueryScales = quant.KeyScales.Q, for the scores to be q·k.
//
// Its methods are safe for concurrent use (except Trim: see there); calls on one sequence take
// turns (an append's two halves are one step to View, Len and Release), while other sequences'
// go on. A sequence must not be appended to or released while a kernel reads it. Close, or the
// engine's Close, releases everything.
type QuantizedKVCache struct {
	e      *Engine
	cfg    memory.KVCacheConfig // as given: DType is the float type appended
	f      quant.Format
	codes  *memory.KVCache
	scales *memory.KVCache
	keyMul *memory.Tensor // QuantizedKVCacheOptions.KeyScales, or nil
	seqs   []sync.Mutex   // one per sequence

	scratchMu sync.Mutex
	scratch   []*appendScratch // free for appends
	closed    bool             // Close has freed the scratch; appends free theirs
}

// QuantizedKVCacheOptions are NewQuantizedKVCache's options.
type QuantizedKVCacheOptions struct {
	// KeyScales, if set, are the key side of RoPE-aware key scaling (quant.KeyScales.K): an f32
	// tensor [Heads, HeadDim] of the engine, contiguous, by which every append multiplies the
	// keys before quantizing them (QuantizeOptions.Scales); the values are not scaled. The cache
	// reads it at every append and does not own it: it must stay open and unchanged while the
	// cache is appended to. Decode with QuantizedDecodeOptions.QueryScales = quant.KeyScales.Q.
	KeyScales *memory.Tensor
}

// NewQuantizedKVCache makes a quantized KV cache on e: cfg describes the float keys and values
// appended (DType f32, f16 or bf16, HeadDim D) and the sequences as for memory.NewKVCache, f is
// quant.Int8 or quant.Int4, whose packing D must suit (quant.Format.Check); opts, at most one,
// may give key scales (QuantizedKVCacheOptions). It commits no memory. Errors name what is at
// fault; memory's name the cache (codes or scales) whose configuration failed.
func NewQuantizedKVCache(e *Engine, cfg memory.KVCacheConfig, f quant.Format, opts ...QuantizedKVCacheOptions) (*QuantizedKVCache, error) {
	if err := e.usable(); err != nil {
		return nil, err
	}
	if len(opts) > 1 {
		return nil, fmt.Errorf("attention: NewQuantizedKVCache: %d QuantizedKVCacheOptions, want at most one", len(opts))
	}
	var o QuantizedKVCacheOptions
	if len(opts) == 1 {
		o = opts[0]
	}
	if f != quant.Int8 && f != quant.Int4 {
		return nil, fmt.Errorf("attention: NewQuantizedKVCache: format %v: keys and values are %v or %v", f, quant.Int8, quant.Int4)
	}
	if cfg.DType != memory.F32 && cfg.DType != memory.F16 && cfg.DType != memory.BF16 {
		return nil, fmt.Errorf("attention: NewQuantizedKVCache: KVCacheConfig.DType must be the float type appended (f32, f16 or bf16), got %v", cfg.DType)
	}
	if err := f.Check(cfg.HeadDim); err != nil {
		return nil, fmt.Errorf("attention: NewQuantizedKVCache: KVCacheConfig.HeadDim: %w", err)
	}
	if cfg.Unpaired {
		return nil, fmt.Errorf("attention: NewQuantizedKVCache: KVCacheConfig.Unpaired is the cache's to set (its scales), not the caller's")
	}
	if ks := o.KeyScales; ks != nil {
		const name = "QuantizedKVCacheOptions.KeyScales"
		if err := e.owned(name, ks); err != nil {
			return nil, &opError{op: "NewQuantizedKVCache", err: err}
		}
		if want := []int{cfg.Heads, cfg.HeadDim}; ks.DType != memory.F32 || !slices.Equal(ks.Shape, want) || !ks.Contiguous() {
			return nil, fmt.Errorf("attention: NewQuantizedKVCache: %s must be a contiguous f32 tensor of shape %v (Heads, HeadDim), got %s %v strides %v",
				name, want, ks.DType, ks.Shape, ks.Strides)
		}
	}
	cc, sc := cfg, cfg
	cc.DType, cc.HeadDim = memory.F32, cfg.HeadDim/f.PerWord()
	sc.DType, sc.HeadDim, sc.Unpaired = memory.BF16, f.Groups(cfg.HeadDim), true
	sc.Headroom = 0 // the scales follow the codes' commits (scalesAhead)
	// Spare pages in proportion to the bytes a token takes in each.
	codeBytes, scaleBytes := cc.HeadDim*cc.DType.Size(), sc.HeadDim*sc.DType.Size()
	sc.SparePages = (cfg.SparePages*scaleBytes + codeBytes - 1) / codeBytes
	codes, err := memory.NewKVCache(e.Allocator(), cc)
	if err != nil {
		return nil, fmt.Errorf("attention: NewQuantizedKVCache: codes: %w", err)
	}
	scales, err := memory.NewKVCache(e.Allocator(), sc)
	if err != nil {
		codes.Close()
		return nil, fmt.Errorf("attention: NewQuantizedKVCache: scales: %w", err)
	}
	if codes.Paged() != scales.Paged() { // one device, one choice: never expected
		codes.Close()
		scales.Close()
		return nil, fmt.Errorf("attention: NewQuantizedKVCache: the codes' and scales' caches took different layouts")
	}
	return &QuantizedKVCache{e: e, cfg: cfg, f: f, codes: codes, scales: scales, keyMul: o.KeyScales,
		seqs: make([]sync.Mutex, cfg.Sequences)}, nil
}

// KeyScales is the key-scale tensor the cache was made with (QuantizedKVCacheOptions), or nil.
func (c *QuantizedKVCache) KeyScales() *memory.Tensor { return c.keyMul }

// Config is the configuration the cache was made with (the float keys' and values').
func (c *QuantizedKVCache) Config() memory.KVCacheConfig { return c.cfg }

// Format is the format of the keys and values.
func (c *QuantizedKVCache) Format() quant.Format { return c.f }

// Paged reports whether the cache has the paged layout (see View).
func (c *QuantizedKVCache) Paged() bool { return c.codes.Paged() }

// check checks seq.
func (c *QuantizedKVCache) check(seq int) error {
	if seq < 0 || seq >= c.cfg.Sequences {
		return fmt.Errorf("attention: quantized kv cache: sequence %d out of range [0, %d)", seq, c.cfg.Sequences)
	}
	return nil
}

// Len is the number of tokens sequence seq holds (0 for a bad seq or a closed cache).
func (c *QuantizedKVCache) Len(seq int) int {
	if c.check(seq) != nil {
		return 0
	}
	c.seqs[seq].Lock()
	defer c.seqs[seq].Unlock()
	return c.codes.Len(seq)
}

// AppendTensors quantizes float device tensors k and v, shaped [n, Heads, HeadDim] or
// [1, n, Heads, HeadDim] of the configuration's DType and the engine's allocator (laid out as
// Quantize takes them), and appends their codes and scales to sequence seq: either both are
// appended or, on error, neither (the sequence holds what it held; through scratch, where the
// scales' append failed after the codes', the codes were truncated back, which closes the
// sequence's views made before, as memory.KVCache.Truncate does). It is AppendTensorsBatch of
// one sequence.
func (c *QuantizedKVCache) AppendTensors(ctx context.Context, seq int, k, v *memory.Tensor) error {
	return c.AppendTensorsBatch(ctx, []memory.TensorAppend{{Seq: seq, K: k, V: v}})
}

// AppendTensorsBatch is AppendTensors to several distinct sequences at once: every sequence's K
// and V are quantized in one submission (with key scales, K scaled as it is quantized; the error
// names QuantizeOptions.Scales where the key-scale tensor was closed). In the sparse layout,
// where each token's scales fill whole 32-bit words (an even Heads * Groups(HeadDim)), they are
// quantized straight into the sequences' new tokens in the two caches (memory.KVCache.Extend):
// one submission, besides binds. Otherwise they are quantized into scratch memory the cache
// keeps for its appends (grown as they need, freed by Trim and Close), then the codes of all of
// them are appended in one submission (memory.KVCache.AppendTensorsBatch) and their scales in
// another. Either way the scales' pages are committed first as far as the codes' (see
// QuantizedKVCache on Headroom), and either every sequence gets its tokens or, on error, none
// does: in place, both caches' extensions are aborted; through scratch, where the scales'
// append failed after the codes', every sequence's codes were truncated back, closing its views
// made before. The sources may be the same tensors for several sequences. Errors name the
// sequence and the tensor at fault, or the cache (codes or scales) whose append failed; a
// sequence listed twice is an error, and an empty list does nothing.
func (c *QuantizedKVCache) AppendTensorsBatch(ctx context.Context, appends []memory.TensorAppend) error {
	if err := c.e.usable(); err != nil {
		return err
	}
	seqs := make([]int, len(appends))
	for i, ap := range appends {
		if err := c.checkAppend(ap); err != nil {
			return err
		}
		if slices.Contains(seqs[:i], ap.Seq) {
			return fmt.Errorf("attention: quantized kv cache: sequence %d is appended to twice in one batch", ap.Seq)
		}
		seqs[i] = ap.Seq
	}
	if len(appends) == 0 {
		return nil
	}
	defer c.lockSeqs(seqs)()
	had, ns := make([]int, len(seqs)), make([]int, len(seqs)) // tokens held, and appended
	for i, seq := range seqs {
		had[i] = c.codes.Len(seq)
		if have := c.scales.Len(seq); have != had[i] { // only a closed cache, whose lengths are 0
			return fmt.Errorf("attention: quantized kv cache: sequence %d holds %d tokens of codes and %d of scales", seq, had[i], have)
		}
		ns[i] = appends[i].K.Shape[len(appends[i].K.Shape)-3]
		if ns[i] > c.cfg.MaxLen-had[i] { // before quantizing for nothing
			return fmt.Errorf("attention: quantized kv cache: sequence %d holds %d tokens; %d more exceed MaxLen %d", seq, had[i], ns[i], c.cfg.MaxLen)
		}
	}
	if c.inPlace() {
		return c.appendInPlace(ctx, appends, ns)
	}
	sc := c.takeScratch()
	defer c.putScratch(sc)
	jobs := make([]quantizeJob, 0, 2*len(appends))
	codes := make([]memory.TensorAppend, len(appends))
	scales := make([]memory.TensorAppend, len(appends))
	for i, ap := range appends {
		var q [2]*Quantized
		for j, x := range []*memory.Tensor{ap.K, ap.V} {
			var err error
			if q[j], err = sc.quantized(c.e, c.f, x.Shape); err != nil {
				return fmt.Errorf("attention: quantized kv cache: append to sequence %d: scratch: %w", ap.Seq, err)
			}
		}
		jobs = append(jobs, quantizeJob{out: q[0], x: ap.K, opts: QuantizeOptions{Scales: c.keyMul}}, quantizeJob{out: q[1], x: ap.V})
		codes[i] = memory.TensorAppend{Seq: ap.Seq, K: q[0].Codes, V: q[1].Codes}
		scales[i] = memory.TensorAppend{Seq: ap.Seq, K: q[0].Scales, V: q[1].Scales}
	}
	err := c.e.quantizeBatch(ctx, jobs, func(i int, err error) error {
		return fmt.Errorf("attention: quantized kv cache: append to sequence %d: %s: %w", appends[i/2].Seq, []string{"k", "v"}[i%2], err)
	})
	if err != nil {
		return err
	}
	if err := c.codes.AppendTensorsBatch(ctx, codes); err != nil {
		return fmt.Errorf("attention: quantized kv cache: codes: %w", err)
	}
	err = c.scalesAhead(seqs, ns)
	if err == nil {
		err = c.scales.AppendTensorsBatch(ctx, scales)
	}
	if err != nil {
		errs := []error{fmt.Errorf("attention: quantized kv cache: scales: %w", err)}
		// Truncate drops the codes' tokens even where it reports an unbind failing.
		for i, seq := range seqs {
			if terr := c.codes.Truncate(seq, had[i]); terr != nil {
				errs = append(errs, fmt.Errorf("attention: quantized kv cache: undoing the codes' append to sequence %d: %w", seq, terr))
			}
		}
		return errors.Join(errs...)
	}
	return nil
}

// inPlace reports whether appends quantize straight into the caches (appendInPlace): in the
// sparse layout, where every token's scales are a whole number of 32-bit words (the quantizer
// writes them in words; a sequence's scales then start on one).
func (c *QuantizedKVCache) inPlace() bool {
	return !c.codes.Paged() && c.cfg.Heads*c.f.Groups(c.cfg.HeadDim)%2 == 0
}

// appendInPlace is AppendTensorsBatch in the sparse layout: both caches take the new tokens
// (memory.KVCache.Extend, the scales' pages as far ahead as the codes', scalesAheadOf),
// one submission quantizes every sequence's K and V into them, and both commit; with no scratch
// and no copies. A failure anywhere aborts both, leaving every sequence (and its pages) as it
// was. The appends' sequences are locked; ns are their tokens.
func (c *QuantizedKVCache) appendInPlace(ctx context.Context, appends []memory.TensorAppend, ns []int) error {
	ext := make([]memory.Extend, len(appends))
	for i, ap := range appends {
		ext[i] = memory.Extend{Seq: ap.Seq, Tokens: ns[i]}
	}
	cx, err := c.codes.Extend(ctx, ext)
	if err != nil {
		return fmt.Errorf("attention: quantized kv cache: codes: %w", err)
	}
	for i := range ext {
		ext[i].Ahead = c.scalesAheadOf(ext[i].Seq, ext[i].Tokens)
	}
	sx, err := c.scales.Extend(ctx, ext)
	if err != nil {
		cx.Abort()
		return fmt.Errorf("attention: quantized kv cache: scales: %w", err)
	}
	jobs := make([]quantizeJob, 0, 2*len(appends))
	for i, ap := range appends {
		for j, x := range []*memory.Tensor{ap.K, ap.V} {
			codes, scales := quantizedShapes(c.f, x.Shape)
			out := &Quantized{Format: c.f}
			if out.Codes, err = []*memory.Tensor{cx.K[i], cx.V[i]}[j].Reshape(codes...); err == nil {
				out.Scales, err = []*memory.Tensor{sx.K[i], sx.V[i]}[j].Reshape(scales...)
			}
			if err != nil {
				sx.Abort()
				cx.Abort()
				return fmt.Errorf("attention: quantized kv cache: append to sequence %d: %w", ap.Seq, err)
			}
			opts := QuantizeOptions{}
			if j == 0 {
				opts.Scales = c.keyMul
			}
			jobs = append(jobs, quantizeJob{out: out, x: x, opts: opts})
		}
	}
	err = c.e.quantizeBatch(ctx, jobs, func(i int, err error) error {
		return fmt.Errorf("attention: quantized kv cache: append to sequence %d: %s: %w", appends[i/2].Seq, []string{"k", "v"}[i%2], err)
	})
	if err != nil {
		sx.Abort()
		cx.Abort()
		return err
	}
	cx.Commit()
	sx.Commit()
	return nil
}

// lockSeqs takes the locks of sequences seqs (distinct, in range), in increasing order, and
// returns the function that releases them.
func (c *QuantizedKVCache) lockSeqs(seqs []int) func() {
	sorted := slices.Sorted(slices.Values(seqs))
	for _, s := range sorted {
		c.seqs[s].Lock()
	}
	return func() {
		for _, s := range sorted {
			c.seqs[s].Unlock()
		}
	}
}

// checkAppend checks one sequence's part of an append: the sequence, and float K and V of the
// configuration's dtype, heads and head dim, with as many tokens. Quantize checks the rest.
func (c *QuantizedKVCache) checkAppend(ap memory.TensorAppend) error {
	seq := ap.Seq
	if err := c.check(seq); err != nil {
		return err
	}
	n := 0
	for _, a := range []arg{{"k", ap.K}, {"v", ap.V}} {
		if a.t == nil {
			return fmt.Errorf("attention: quantized kv cache: append to sequence %d: %s is nil", seq, a.name)
		}
		sh := a.t.Shape
		ok := len(sh) == 3 || len(sh) == 4 && sh[0] == 1
		if ok && (sh[len(sh)-2] != c.cfg.Heads || sh[len(sh)-1] != c.cfg.HeadDim) {
			ok = false
		}
		if a.t.DType != c.cfg.DType || !ok {
			return fmt.Errorf("attention: quantized kv cache: append to sequence %d: %s is %s %v, want %s [n, %d, %d] or [1, n, %d, %d]",
				seq, a.name, a.t.DType, sh, c.cfg.DType, c.cfg.Heads, c.cfg.HeadDim, c.cfg.Heads, c.cfg.HeadDim)
		}
		if tokens := sh[len(sh)-3]; a.name == "k" {
			n = tokens
		} else if tokens != n {
			return fmt.Errorf("attention: quantized kv cache: append to sequence %d: k has %d tokens, v %d", seq, n, tokens)
		}
	}
	return nil
}

// appendScratch is the device memory an append quantizes its keys and values into before they
// are copied into the caches: codes (f32 words) and scales (bf16), every sequence's K and V one
// after another. The cache keeps it between appends, on a free list (so that appends to other
// sequences running at once each have their own), and an append needing more than it holds
// grows it.
type appendScratch struct {
	codes, scales scratchArena
}

// quantized returns codes and scales in the scratch for a float tensor of shape x in format f.
func (s *appendScratch) quantized(e *Engine, f quant.Format, x []int) (*Quantized, error) {
	cs, ss := quantizedShapes(f, x)
	codes, err := s.codes.take(e, memory.F32, cs)
	if err != nil {
		return nil, err
	}
	scales, err := s.scales.take(e, memory.BF16, ss)
	if err != nil {
		return nil, err
	}
	return &Quantized{Format: f, Codes: codes, Scales: scales}, nil
}

// reset makes the whole scratch free again; close frees it.
func (s *appendScratch) reset() { s.codes.reset(); s.scales.reset() }
func (s *appendScratch) close() { s.codes.close(); s.scales.close() }

// scratchArena hands out contiguous runs of elements of one dtype, each starting at an even
// element (the quantizer writes scales in whole 32-bit words), from tensors it keeps: from the
// start of each in turn, a new one allocated where none has room, at least as large as all
// before it together (within maxStorageBufferRange).
type scratchArena struct {
	ts      []*memory.Tensor // 1-D
	i, used int              // the tensor runs are taken from, and its elements taken
}

// minScratchElems is the least a scratch arena allocates.
const minScratchElems = 1 << 12

// take returns a contiguous view of shape shape (dtype dt) that no other view taken since the
// last reset overlaps.
func (a *scratchArena) take(e *Engine, dt memory.DType, shape []int) (*memory.Tensor, error) {
	n := 1
	for _, x := range shape {
		n *= x
	}
	for ; a.i < len(a.ts); a.i, a.used = a.i+1, 0 {
		if t := a.ts[a.i]; t.Shape[0]-a.used >= n {
			run, err := t.View([]int{n}, []int{1}, a.used)
			if err != nil {
				return nil, err
			}
			a.used += (n + 1) &^ 1
			return run.Reshape(shape...)
		}
	}
	total := 0
	for _, t := range a.ts {
		total += t.Shape[0]
	}
	limit := int(e.profile.MaxStorageBufferRange) / dt.Size() &^ 1
	size := max(n, min(max(total, minScratchElems), limit))
	t, err := e.NewTensor(dt, size)
	if err != nil {
		return nil, err
	}
	a.ts = append(a.ts, t)
	a.i, a.used = len(a.ts)-1, 0
	return a.take(e, dt, shape)
}

func (a *scratchArena) reset() { a.i, a.used = 0, 0 }

// bytes is the device memory of the arena's tensors.
func (a *scratchArena) bytes() uint64 {
	n := uint64(0)
	for _, t := range a.ts {
		n += uint64(t.Len() * t.DType.Size())
	}
	return n
}

func (a *scratchArena) close() {
	for _, t := range a.ts {
		t.Close()
	}
	a.ts = nil
	a.reset()
}

// takeScratch returns scratch for an append: one free, or a new one.
func (c *QuantizedKVCache) takeScratch() *appendScratch {
	c.scratchMu.Lock()
	defer c.scratchMu.Unlock()
	if n := len(c.scratch); n > 0 {
		s := c.scratch[n-1]
		c.scratch = c.scratch[:n-1]
		return s
	}
	return &appendScratch{}
}

// putScratch gives an append's scratch back for the next one, or frees it once the cache is
// closed.
func (c *QuantizedKVCache) putScratch(s *appendScratch) {
	c.scratchMu.Lock()
	defer c.scratchMu.Unlock()
	if c.closed {
		s.close()
		return
	}
	s.reset()
	c.scratch = append(c.scratch, s)
}

// View returns sequence seq's keys and values as Quantized tensors [1, Len(seq), Heads,
// HeadDim] (codes [1, Len, Heads, HeadDim/PerWord], scales [1, Len, Heads, Groups]), for
// DecodeQuantized (which waits for the binds of the codes' and the scales' pages alike).
//
// They are the two caches' views (memory.KVCache.View), in either layout: nothing is copied
// (ctx is unused) and Close does nothing. They stay valid while the sequence grows, covering
// the tokens it held when made, and report Closed once the sequence is released or the cache
// closed (the codes, too, once a failed append's undo truncates them), so that using them then
// fails with memory.ErrClosed rather than reading pages given to another sequence. In the paged
// layout the codes and the scales are paged views (memory.Tensor.Pages), each with its cache's
// block table, which the quantized decode kernels follow as the float ones follow paged K and
// V's; as the float cache's paged views, those made before the caches' page buffers grew read
// the buffers the pages moved out of until Trim, and report Closed after it.
func (c *QuantizedKVCache) View(ctx context.Context, seq int) (k, v *Quantized, err error) {
	if err := c.e.usable(); err != nil {
		return nil, nil, err
	}
	if err := c.check(seq); err != nil {
		return nil, nil, err
	}
	c.seqs[seq].Lock()
	defer c.seqs[seq].Unlock()
	kc, vc, err := c.codes.View(seq)
	if err != nil {
		return nil, nil, fmt.Errorf("attention: quantized kv cache: %w", err)
	}
	ks, vs, err := c.scales.View(seq)
	if err != nil {
		return nil, nil, fmt.Errorf("attention: quantized kv cache: %w", err)
	}
	return &Quantized{Format: c.f, Codes: kc, Scales: ks}, &Quantized{Format: c.f, Codes: vc, Scales: vs}, nil
}

// Release ends sequence seq in both caches: its pages are unbound and kept for reuse, and it
// holds no tokens; the views made before report Closed. No kernel may be reading it.
func (c *QuantizedKVCache) Release(seq int) error {
	if err := c.check(seq); err != nil {
		return err
	}
	c.seqs[seq].Lock()
	defer c.seqs[seq].Unlock()
	err := errors.Join(c.codes.Release(seq), c.scales.Release(seq))
	if err != nil {
		return fmt.Errorf("attention: quantized kv cache: %w", err)
	}
	return nil
}

// Reserve commits pages for tokens more tokens of sequence seq (plus Headroom) in both caches,
// the codes' and the scales', without appending any (memory.KVCache.Reserve), so that appends up
// to there bind nothing. Where the scales' reserve fails after the codes', the codes' pages stay
// committed: reserved pages hold no tokens, and a later append or Release uses or frees them.
func (c *QuantizedKVCache) Reserve(seq, tokens int) error {
	if err := c.check(seq); err != nil {
		return err
	}
	c.seqs[seq].Lock()
	defer c.seqs[seq].Unlock()
	if err := c.codes.Reserve(seq, tokens); err != nil {
		return fmt.Errorf("attention: quantized kv cache: codes: %w", err)
	}
	if err := c.scalesAhead([]int{seq}, []int{tokens}); err != nil {
		return fmt.Errorf("attention: quantized kv cache: scales: %w", err)
	}
	return nil
}

// scalesAhead commits the scales of sequences seqs (locked) for tokens[i] more tokens each, and,
// where the cache has Headroom, as far ahead past them as their codes are committed, where the
// pool has pages: the scales' cache has no headroom of its own, so that it binds pages in the
// appends that bind the codes' and in no others. A step that binds costs far more than one that
// does not, and the scales' pages hold many more tokens than the codes' (HeadDim / 2 times as
// many for Int8), so with headroom of their own they would bind in other steps.
func (c *QuantizedKVCache) scalesAhead(seqs, tokens []int) error {
	rs := make([]memory.Reservation, len(seqs))
	for i, seq := range seqs {
		rs[i] = memory.Reservation{Seq: seq, Tokens: tokens[i], Ahead: c.scalesAheadOf(seq, tokens[i])}
	}
	return c.scales.ReserveBatch(rs)
}

// scalesAheadOf is how far past tokens more tokens sequence seq's scales are committed ahead:
// as far as its codes are, where the cache has Headroom.
func (c *QuantizedKVCache) scalesAheadOf(seq, tokens int) int {
	if c.cfg.Headroom == 0 {
		return 0
	}
	return max(0, min(c.codes.Backed(seq), c.cfg.MaxLen)-c.scales.Len(seq)-tokens)
}

// WaitBinds waits until every bind and unbind the two caches submitted so far is done
// (memory.KVCache.WaitBinds); decodes need not, but a timing of the binds may.
func (c *QuantizedKVCache) WaitBinds(ctx context.Context) error {
	if err := c.codes.WaitBinds(ctx); err != nil {
		return fmt.Errorf("attention: quantized kv cache: codes: %w", err)
	}
	if err := c.scales.WaitBinds(ctx); err != nil {
		return fmt.Errorf("attention: quantized kv cache: scales: %w", err)
	}
	return nil
}

// QuantizedKVCacheStats describe a QuantizedKVCache's memory: each cache's stats, and the two
// together.
type QuantizedKVCacheStats struct {
	Codes, Scales  memory.KVCacheStats
	NeededBytes    uint64 // the codes' and scales' NeededBytes together
	CommittedBytes uint64 // the codes' and scales' CommittedBytes together
	// FloatBytes is what a float cache of the configuration's DType would need for the tokens
	// held: 2 (K and V) * tokens * Heads * HeadDim * dtype size.
	FloatBytes uint64
	// ScratchBytes is the device memory kept between appends for their quantized keys and
	// values (as large as the largest append; one set for each append that ran at once; not that
	// of appends running), which Trim frees; 0 where appends quantize in place
	// (AppendTensorsBatch).
	ScratchBytes uint64
}

// Stats reports what the cache holds and commits. It reads the two caches without waiting for
// appends in flight, so during one the codes may count tokens the scales do not yet.
func (c *QuantizedKVCache) Stats() QuantizedKVCacheStats {
	st := QuantizedKVCacheStats{Codes: c.codes.Stats(), Scales: c.scales.Stats()}
	st.NeededBytes = st.Codes.NeededBytes + st.Scales.NeededBytes
	st.CommittedBytes = st.Codes.CommittedBytes + st.Scales.CommittedBytes
	for _, n := range st.Codes.SeqTokens {
		st.FloatBytes += 2 * uint64(n) * uint64(c.cfg.Heads) * uint64(c.cfg.HeadDim) * uint64(c.cfg.DType.Size())
	}
	c.scratchMu.Lock()
	for _, sc := range c.scratch {
		st.ScratchBytes += sc.codes.bytes() + sc.scales.bytes()
	}
	c.scratchMu.Unlock()
	return st
}

// Trim frees the device memory the caches no longer use (memory.KVCache.Trim on both): pages
// no sequence holds and, in the paged layout, the buffers the pages moved out of as the caches
// grew, whose views report Closed from then on; and the appends' scratch (ScratchBytes). No
// append or View may be running, nor a kernel reading views made before the caches' pages last
// moved.
func (c *QuantizedKVCache) Trim() {
	c.codes.Trim()
	c.scales.Trim()
	c.scratchMu.Lock()
	defer c.scratchMu.Unlock()
	for _, sc := range c.scratch {
		sc.close()
	}
	c.scratch = nil
}

// Close releases both caches; their views report Closed. Idempotent.
func (c *QuantizedKVCache) Close() {
	if c == nil {
		return
	}
	for i := range c.seqs { // appends in flight finish first: they write the caches in place
		c.seqs[i].Lock()
		defer c.seqs[i].Unlock()
	}
	c.codes.Close()
	c.scales.Close()
	c.scratchMu.Lock()
	defer c.scratchMu.Unlock()
	c.closed = true
	for _, s := range c.scratch {
		s.close()
	}
	c.scratch = nil
}
