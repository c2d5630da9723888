package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/quant"
	"github.com/vkattn/vkattn/vk"
)

// cache-bench defaults: the target shape on a GPU (64 sequences grown to 32k tokens), a short
// run on a CPU device.
const (
	gpuCacheSeqs, gpuCacheLen, gpuCacheStep = 64, 32768, 16
	cpuCacheSeqs, cpuCacheLen, cpuCacheStep = 8, 512, 4
)

// cacheLoop is one timed loop of cache-bench.
type cacheLoop struct {
	Name           string  `json:"name"` // "grown" or "preallocated"
	Steps          int     `json:"steps"`
	P50MS          float64 `json:"p50_ms"`
	P99MS          float64 `json:"p99_ms"`
	MaxMS          float64 `json:"max_ms"`
	MeanMS         float64 `json:"mean_ms"`
	BindBatches    int     `json:"bind_batches"`                // submitted during the steps
	StepsWithBinds int     `json:"steps_with_binds"`            // steps that submitted a batch
	P50BindMS      float64 `json:"p50_bind_steps_ms,omitempty"` // median of those steps
	// Of the steps with binds, the medians of the append's and the decode's parts; and per
	// batch, the host time of submitting its binds.
	P50BindAppendMS  float64 `json:"p50_bind_steps_append_ms,omitempty"`
	P50BindDecodeMS  float64 `json:"p50_bind_steps_decode_ms,omitempty"`
	SubmitMSPerBatch float64 `json:"bind_submit_ms_per_batch,omitempty"`
	// Allocations made during the steps, and the host time of each, on average; of that time,
	// what the steps' calls spent allocating (the rest allocated spare pages beside them).
	Allocations       int     `json:"allocations"`
	MSPerAllocation   float64 `json:"ms_per_allocation,omitempty"`
	AllocateMSInCalls float64 `json:"allocate_ms_in_calls"`
	CommittedBytes    uint64  `json:"committed_bytes"` // K and V together, at the end
	NeededBytes       uint64  `json:"needed_bytes"`
	// FloatBytes, with quantized K and V (-kv int8 or int4), is what a float cache of the
	// -dtype needs for the tokens held (QuantizedKVCache.Stats().FloatBytes).
	FloatBytes uint64 `json:"float_bytes,omitempty"`
	// StepMS is every step's time in order, and BindSteps the indices of the steps that bound.
	StepMS    []float64 `json:"step_ms"`
	BindSteps []int     `json:"bind_steps"`
}

// cacheReport is what cache-bench -json writes.
type cacheReport struct {
	Device            string      `json:"device"`
	Driver            string      `json:"driver"`
	Date              time.Time   `json:"date"`
	Seqs              int         `json:"seqs"`
	Len               int         `json:"len"`
	Step              int         `json:"step"`
	Hq                int         `json:"hq"`
	Hk                int         `json:"hk"`
	D                 int         `json:"d"`
	DType             string      `json:"dtype"`
	KV                string      `json:"kv"` // how the cache stores K and V: the dtype, int8 or int4
	Headroom          int         `json:"headroom"`
	ChunkPages        int         `json:"chunk_pages"` // -chunk-pages: 0 for the caches' default
	SyncBinds         bool        `json:"sync_binds"`  // -sync-binds
	SparePages        int         `json:"spare_pages"` // KVCacheConfig.SparePages of the caches (the codes' where quantized)
	PageBytes         uint64      `json:"page_bytes"`
	BindQueue         string      `json:"bind_queue"`
	PerSeq            bool        `json:"per_seq"` // calls per sequence rather than one per step
	Loops             []cacheLoop `json:"loops"`
	P99Ratio          float64     `json:"p99_grown_over_preallocated"`
	CommitSubmitP50US float64     `json:"commit_submit_p50_us"`
	CommitSubmitP99US float64     `json:"commit_submit_p99_us"`
	CommitDoneP50US   float64     `json:"commit_done_p50_us"`
	CommitDoneP99US   float64     `json:"commit_done_p99_us"`
}

func cmdCacheBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("cache-bench", "Grows -seqs sequences of a KV cache (memory.KVCache) from 0 to -len tokens, -step tokens\n"+
		"per sequence per step, decoding one new token of every sequence each step, and reports the step\n"+
		"times beside the same steps, taken in turn, on a cache whose\n"+
		"pages were all bound beforehand; then the cost of one page commit (one page of K and one of V): the time to\n"+
		"submit it and the time until it is done. A step is one append of every sequence's tokens from\n"+
		"device tensors (AppendTensorsBatch) and one decode of every sequence (DecodeCache); with\n"+
		"-per-seq, an AppendTensors and a Decode on its views per sequence. With -kv int8 or int4 the\n"+
		"cache is an attention.QuantizedKVCache, quantized on the device as it is appended: a step is\n"+
		"its AppendTensorsBatch and one DecodeQuantizedCache (with -per-seq, an AppendTensors, then a\n"+
		"View and a DecodeQuantizedInto per sequence); the table adds the bytes it commits against what\n"+
		"a float cache needs for the same tokens (the page commit is timed on a memory.KVCache of the\n"+
		"-dtype either way).\n"+
		"On a GPU the defaults are 64 sequences to 32k tokens, 16 tokens a step; on a CPU device\n"+
		"8 sequences to 512, 4 a step.", stderr)
	seqs := fs.Int("seqs", gpuCacheSeqs, fmt.Sprintf("sequences (CPU device default %d)", cpuCacheSeqs))
	length := fs.Int("len", gpuCacheLen, fmt.Sprintf("tokens each sequence grows to (CPU device default %d)", cpuCacheLen))
	step := fs.Int("step", gpuCacheStep, fmt.Sprintf("tokens appended to each sequence per step (CPU device default %d)", cpuCacheStep))
	hq := fs.Int("hq", 32, "query heads")
	hk := fs.Int("hk", 8, "key/value heads (a divisor of -hq)")
	d := fs.Int("d", 128, "head dim")
	dtFlag := fs.String("dtype", "f16", "storage type of the cache and q (f32, f16 or bf16); with -kv int8 or int4, of the keys and values appended")
	kvFlag := fs.String("kv", "", "storage of K and V in the cache: the -dtype, int8 or int4 (a QuantizedKVCache); default the -dtype")
	headroom := fs.Int("headroom", -1, "tokens bound ahead of need (-1 = four pages' worth, and at least four steps)")
	commits := fs.Int("commits", 200, "page commits timed")
	jsonFile := fs.String("json", "", "write the report as JSON to this file")
	perSeq := fs.Bool("per-seq", false, "append and decode each sequence in calls of its own")
	chunk := fs.Int("chunk-pages", 0, "pages in each device memory allocation of the caches (KVCacheConfig.ChunkPages; 0 = the default)")
	syncBinds := fs.Bool("sync-binds", false, "wait for each batch of binds before the append that submitted it returns (KVCacheConfig.SyncBinds)")
	spare := fs.Int("spare-pages", -1, "pages each cache keeps allocated and free for growth (KVCacheConfig.SparePages; -1 = what one growth of every sequence takes, 0 = none)")
	var dev deviceFlags
	dev.register(fs, false, "enable the Khronos validation layer (slow; any validation error fails the bench)")
	if err := parse(fs, args); err != nil {
		return err
	}
	dt, err := memory.ParseDType(*dtFlag)
	if err != nil {
		return usageError{fmt.Errorf("cache-bench: -dtype: %w", err)}
	}
	kv, format, quantized := dt.String(), quant.Format(0), false
	if f, ok := kvFormats[*kvFlag]; ok {
		kv, format, quantized = *kvFlag, f, true
	} else if *kvFlag != "" {
		if t, err := memory.ParseDType(*kvFlag); err != nil || t != dt {
			return usageError{fmt.Errorf("cache-bench: -kv: %q is neither int8, int4 nor the -dtype %s", *kvFlag, dt)}
		}
	}
	switch {
	case *seqs < 1 || *length < 1 || *step < 1 || *hq < 1 || *hk < 1 || *d < 1 || *commits < 1:
		return usageError{errors.New("cache-bench: -seqs, -len, -step, -hq, -hk, -d and -commits must be positive")}
	case *hq%*hk != 0:
		return usageError{fmt.Errorf("cache-bench: -hq %d is not a multiple of -hk %d", *hq, *hk)}
	case *headroom < -1:
		return usageError{errors.New("cache-bench: -headroom must be >= -1")}
	case *chunk < 0:
		return usageError{errors.New("cache-bench: -chunk-pages must be >= 0")}
	case *spare < -1:
		return usageError{errors.New("cache-bench: -spare-pages must be >= -1")}
	}
	if quantized {
		if err := format.Check(*d); err != nil {
			return usageError{fmt.Errorf("cache-bench: -d for -kv %s: %w", kv, err)}
		}
	}
	e, err := dev.open(printMessages(stderr, vk.SeverityWarning))
	if err != nil {
		return err
	}
	defer e.Close()
	defer dev.printStats(stderr, e)
	p := e.Profile()
	set := flagSet(fs)
	if p.Type == vk.DeviceCPU {
		for name, v := range map[string]struct {
			p *int
			x int
		}{"seqs": {seqs, cpuCacheSeqs}, "len": {length, cpuCacheLen}, "step": {step, cpuCacheStep}} {
			if !set[name] {
				*v.p = v.x
			}
		}
	}
	devc := e.Allocator().Device()
	if err := devc.SparseResidency(); err != nil {
		return fmt.Errorf("cache-bench: %w", err)
	}
	b := cacheBench{e: e, seqs: *seqs, length: *length, step: min(*step, *length), hq: *hq, hk: *hk, d: *d, dt: dt, perSeq: *perSeq,
		quantized: quantized, format: format, chunkPages: *chunk, syncBinds: *syncBinds}
	probe, err := memory.NewKVCache(e.Allocator(), b.config(0, 0))
	if err != nil {
		return fmt.Errorf("cache-bench: %w", err)
	}
	page := probe.PageSize()
	probe.Close()
	tokenBytes := uint64(*hk * *d * dt.Size())
	if quantized { // the codes' pages, which fill first
		tokenBytes = uint64(*hk * *d / format.PerWord() * 4)
	}
	b.headroom = *headroom
	if b.headroom < 0 {
		b.headroom = max(int(4*page/tokenBytes), 4*b.step)
	}
	// A growth binds a sequence's pages up to Headroom tokens ahead once it has half of them
	// left: half the headroom and a step's tokens, K and V, for every sequence.
	b.sparePages = *spare
	if b.sparePages < 0 {
		b.sparePages = b.seqs * 2 * int((uint64(b.headroom/2+b.step)*tokenBytes+page-1)/page)
	}
	family, separate := devc.BindQueue()
	where := fmt.Sprintf("queue family %d, the compute queue", family)
	if separate {
		where = fmt.Sprintf("queue family %d, a queue of its own", family)
	}
	rep := cacheReport{Device: p.Name, Driver: p.DriverName + " " + p.DriverInfo, Date: time.Now().UTC(), Seqs: b.seqs, Len: b.length,
		Step: b.step, Hq: b.hq, Hk: b.hk, D: b.d, DType: dt.String(), KV: kv, Headroom: b.headroom, ChunkPages: b.chunkPages, SyncBinds: b.syncBinds, SparePages: b.sparePages, PageBytes: page, BindQueue: where, PerSeq: b.perSeq}
	fmt.Fprintf(stderr, "cache-bench: %s: %d sequences to %d tokens, %d a step, Hq=%d Hk=%d d=%d %s, K/V %s; pages of %s, headroom %d tokens; binds on %s\n",
		p.Summary(), b.seqs, b.length, b.step, b.hq, b.hk, b.d, dt, kv, bytesString(page), b.headroom, where)

	if err := b.open(ctx); err != nil {
		return err
	}
	defer b.close()
	if err := b.warmup(ctx); err != nil {
		return err
	}
	if rep.Loops, err = b.loops(ctx, stderr); err != nil {
		return err
	}
	if rep.Loops[1].P99MS > 0 {
		rep.P99Ratio = rep.Loops[0].P99MS / rep.Loops[1].P99MS
	}
	submit, done, err := b.commitCost(ctx, *commits)
	if err != nil {
		return err
	}
	us := func(t time.Duration) float64 { return float64(t) / 1e3 }
	rep.CommitSubmitP50US, rep.CommitSubmitP99US = us(percentile(submit, 50)), us(percentile(submit, 99))
	rep.CommitDoneP50US, rep.CommitDoneP99US = us(percentile(done, 50)), us(percentile(done, 99))
	failed := false
	if err := e.Instance().CheckValidation(); err != nil {
		fmt.Fprintln(stderr, "cache-bench:", err)
		failed = true
	}
	writeCacheTable(stdout, &rep)
	if *jsonFile != "" {
		if err := writeJSONFile(*jsonFile, &rep); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "cache-bench: wrote %s\n", *jsonFile)
	}
	if failed {
		return errFailed
	}
	return nil
}

// cacheBench holds cache-bench's shapes and the tensors its loops share.
type cacheBench struct {
	e                   *attention.Engine
	seqs, length, step  int
	hq, hk, d, headroom int
	dt                  memory.DType
	perSeq              bool
	quantized           bool           // a QuantizedKVCache of format rather than a memory.KVCache
	format              quant.Format   // int8 or int4, where quantized
	kSrc, vSrc, q, o    *memory.Tensor // [1, step, hk, d] each for the appends; [seqs, 1, hq, d]
	q1, o1              *memory.Tensor // sequence 0's
	all                 []int          // 0 .. seqs-1
	chunkPages          int            // KVCacheConfig.ChunkPages
	syncBinds           bool           // KVCacheConfig.SyncBinds
	sparePages          int            // KVCacheConfig.SparePages
	appended            time.Time      // when the step's append returned (stepBatched, stepPerSeq; step1 checks it)
}

// config is the caches' configuration: with the headroom and spare pages given, the rest from
// the flags.
func (b *cacheBench) config(headroom, spare int) memory.KVCacheConfig {
	return memory.KVCacheConfig{Sequences: b.seqs, MaxLen: b.length, Heads: b.hk, HeadDim: b.d, DType: b.dt, Headroom: headroom,
		ChunkPages: b.chunkPages, SyncBinds: b.syncBinds, SparePages: spare}
}

func (b *cacheBench) open(ctx context.Context) error {
	r := rand.New(rand.NewPCG(1, 2))
	normals := func(n int) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32(r.NormFloat64())
		}
		return out
	}
	var err error
	if b.kSrc, err = b.e.Upload(ctx, b.dt, normals(b.step*b.hk*b.d), 1, b.step, b.hk, b.d); err != nil {
		return err
	}
	if b.vSrc, err = b.e.Upload(ctx, b.dt, normals(b.step*b.hk*b.d), 1, b.step, b.hk, b.d); err != nil {
		return err
	}
	if b.q, err = b.e.Upload(ctx, b.dt, normals(b.seqs*b.hq*b.d), b.seqs, 1, b.hq, b.d); err != nil {
		return err
	}
	if b.o, err = b.e.NewTensor(b.dt, b.seqs, 1, b.hq, b.d); err != nil {
		return err
	}
	one := []int{1, 1, b.hq, b.d}
	b.q1, _ = b.q.View(one, b.q.Strides, 0)
	b.o1, _ = b.o.View(one, b.o.Strides, 0)
	b.all = make([]int, b.seqs)
	for i := range b.all {
		b.all[i] = i
	}
	return nil
}

func (b *cacheBench) close() {
	for _, t := range []*memory.Tensor{b.kSrc, b.vSrc, b.q, b.o} {
		t.Close()
	}
}

// warmup decodes dense keys of a few lengths up to -len, so that the loops time no pipeline
// compilation.
func (b *cacheBench) warmup(ctx context.Context) error {
	for _, l := range []int{1, b.step, 256, 1024, 4096, 16384, b.length} {
		if l > b.length {
			continue
		}
		k, err := b.e.NewTensor(b.dt, 1, l, b.hk, b.d)
		if err != nil {
			return err
		}
		if err = k.Fill(ctx, 0); err == nil && !b.quantized {
			_, err = b.e.DecodeInto(ctx, b.o1, nil, b.q1, k, k, attention.DecodeOptions{})
		} else if err == nil {
			var kq *attention.Quantized
			if kq, err = b.e.Quantize(ctx, b.format, k); err == nil {
				_, err = b.e.DecodeQuantizedInto(ctx, b.o1, nil, b.q1, kq, kq, attention.QuantizedDecodeOptions{})
				kq.Close()
			}
		}
		k.Close()
		if err != nil {
			return fmt.Errorf("cache-bench: warm-up decode of %d keys: %w", l, err)
		}
	}
	return nil
}

// benchCache is what the loops need of a cache: a memory.KVCache (floatCache) or an
// attention.QuantizedKVCache (quantCache).
type benchCache interface {
	Reserve(seq, tokens int) error
	WaitBinds(ctx context.Context) error
	Close()
	// step appends kSrc and vSrc to every sequence, which hold n tokens, and decodes every
	// sequence: the work of one step.
	step(ctx context.Context, b *cacheBench, name string, n int, kSrc, vSrc *memory.Tensor) error
	stats() benchStats
}

// benchStats are what the loops read of a cache's stats.
type benchStats struct {
	bindBatches                        int
	submit, allocate                   time.Duration // host time binding and allocating pages in the calls
	spare                              time.Duration // host time allocating spare pages beside them
	allocations                        int           // device memory allocations held
	committed, needed, floatEquivalent uint64        // floatEquivalent: 0 for a float cache
}

type floatCache struct{ *memory.KVCache }

func (c floatCache) stats() benchStats {
	st := c.Stats()
	return benchStats{bindBatches: st.BindBatches, submit: st.BindSubmitTime, allocate: st.AllocateTime, spare: st.SpareAllocateTime, allocations: st.Allocations,
		committed: st.CommittedBytes, needed: st.NeededBytes}
}

type quantCache struct{ *attention.QuantizedKVCache }

func (c quantCache) stats() benchStats {
	st := c.Stats()
	return benchStats{bindBatches: st.Codes.BindBatches + st.Scales.BindBatches,
		submit: st.Codes.BindSubmitTime + st.Scales.BindSubmitTime, allocate: st.Codes.AllocateTime + st.Scales.AllocateTime,
		spare:       st.Codes.SpareAllocateTime + st.Scales.SpareAllocateTime,
		allocations: st.Codes.Allocations + st.Scales.Allocations,
		committed:   st.CommittedBytes, needed: st.NeededBytes, floatEquivalent: st.FloatBytes}
}

// newCache makes one cache of the loops, float or quantized as -kv asks.
func (b *cacheBench) newCache(headroom, spare int) (benchCache, error) {
	if b.quantized {
		c, err := attention.NewQuantizedKVCache(b.e, b.config(headroom, spare), b.format)
		if err != nil {
			return nil, err
		}
		return quantCache{c}, nil
	}
	c, err := memory.NewKVCache(b.e.Allocator(), b.config(headroom, spare))
	if err != nil {
		return nil, err
	}
	return floatCache{c}, nil
}

// cacheRun is one cache of the loops and what its steps measured.
type cacheRun struct {
	c benchCache
	// times are the steps' times, appends their appends' (out.BindSteps lists the steps that
	// bound).
	times, appends []time.Duration
	batches        int
	start          benchStats // before the steps
	out            cacheLoop
}

// loops grows every sequence of two fresh caches to -len tokens, -step a step, decoding each
// sequence after each step, and times the steps: a cache with the headroom ("grown") and one
// without, whose pages were all bound (and waited for) before ("preallocated"). The two take
// their steps in turn, the first of each pair alternating, so that both see the same machine.
func (b *cacheBench) loops(ctx context.Context, stderr io.Writer) ([]cacheLoop, error) {
	runs := []*cacheRun{{out: cacheLoop{Name: "grown", BindSteps: []int{}}}, {out: cacheLoop{Name: "preallocated", BindSteps: []int{}}}}
	for i, r := range runs {
		headroom, spare := b.headroom, b.sparePages
		if i == 1 {
			headroom, spare = 0, 0 // it never grows: spare pages would only be allocated beside its steps
		}
		c, err := b.newCache(headroom, spare)
		if err != nil {
			return nil, fmt.Errorf("cache-bench: %w", err)
		}
		defer c.Close()
		r.c = c
	}
	pre := runs[1].c
	for s := range b.seqs {
		if err := pre.Reserve(s, b.length); err != nil {
			return nil, fmt.Errorf("cache-bench: preallocating: %w", err)
		}
	}
	if err := pre.WaitBinds(ctx); err != nil {
		return nil, err
	}
	for _, r := range runs {
		r.start = r.c.stats()
		r.batches = r.start.bindBatches
	}
	start := time.Now()
	for n, i := 0, 0; n < b.length; n, i = n+b.step, i+1 {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("cache-bench stopped: %w", err)
		}
		m := min(b.step, b.length-n)
		kSrc, vSrc := b.kSrc, b.vSrc
		if m < b.step {
			var err error
			if kSrc, err = b.kSrc.View([]int{1, m, b.hk, b.d}, b.kSrc.Strides, 0); err != nil {
				return nil, err
			}
			vSrc, _ = b.vSrc.View([]int{1, m, b.hk, b.d}, b.vSrc.Strides, 0)
		}
		for j := range runs {
			if err := b.step1(ctx, runs[(i+j)%2], n, kSrc, vSrc); err != nil {
				return nil, err
			}
		}
		if (i+1)%256 == 0 {
			fmt.Fprintf(stderr, "cache-bench: %d of %d tokens, %v\n", n+m, b.length, time.Since(start).Round(time.Millisecond))
		}
	}
	var out []cacheLoop
	for _, r := range runs {
		l := r.out
		st := r.c.stats()
		l.Steps, l.CommittedBytes, l.NeededBytes, l.FloatBytes = len(r.times), st.committed, st.needed, st.floatEquivalent
		l.P50MS, l.P99MS, l.MaxMS = ms(percentile(r.times, 50)), ms(percentile(r.times, 99)), ms(percentile(r.times, 100))
		var total time.Duration
		for _, t := range r.times {
			total += t
		}
		l.MeanMS = ms(total / time.Duration(len(r.times)))
		l.StepMS = make([]float64, len(r.times))
		for i, t := range r.times {
			l.StepMS[i] = ms(t)
		}
		if l.StepsWithBinds = len(l.BindSteps); l.StepsWithBinds > 0 {
			var steps, appends, decodes []time.Duration
			for _, i := range l.BindSteps {
				steps, appends, decodes = append(steps, r.times[i]), append(appends, r.appends[i]), append(decodes, r.times[i]-r.appends[i])
			}
			l.P50BindMS = ms(percentile(steps, 50))
			l.P50BindAppendMS, l.P50BindDecodeMS = ms(percentile(appends, 50)), ms(percentile(decodes, 50))
		}
		if n := st.bindBatches - r.start.bindBatches; n > 0 {
			l.SubmitMSPerBatch = ms((st.submit - r.start.submit) / time.Duration(n))
		}
		inCalls, beside := st.allocate-r.start.allocate, st.spare-r.start.spare
		l.AllocateMSInCalls = ms(inCalls)
		if l.Allocations = st.allocations - r.start.allocations; l.Allocations > 0 {
			l.MSPerAllocation = ms((inCalls + beside) / time.Duration(l.Allocations))
		}
		out = append(out, l)
	}
	fmt.Fprintf(stderr, "cache-bench: %d steps of each cache in %v\n", len(runs[0].times), time.Since(start).Round(time.Millisecond))
	return out, nil
}

// step1 appends kSrc and vSrc to every sequence of r's cache, which hold n tokens, and decodes
// every sequence: one timed step.
func (b *cacheBench) step1(ctx context.Context, r *cacheRun, n int, kSrc, vSrc *memory.Tensor) error {
	b.appended = time.Time{}
	t0 := time.Now()
	if err := r.c.step(ctx, b, r.out.Name, n, kSrc, vSrc); err != nil {
		return err
	}
	dt := time.Since(t0)
	if b.appended.IsZero() {
		return errors.New("cache-bench: a step did not say when its append returned")
	}
	r.times, r.appends = append(r.times, dt), append(r.appends, b.appended.Sub(t0))
	if now := r.c.stats().bindBatches; now > r.batches {
		r.out.BindBatches += now - r.batches
		r.batches = now
		r.out.BindSteps = append(r.out.BindSteps, len(r.times)-1)
	}
	return nil
}

// step is one step on a float cache: one batched append and one decode of all sequences or,
// with -per-seq, calls per sequence (stepPerSeq).
func (c floatCache) step(ctx context.Context, b *cacheBench, name string, n int, kSrc, vSrc *memory.Tensor) error {
	if b.perSeq {
		appendTo := func(s int, k, v *memory.Tensor) error { return c.AppendTensors(ctx, s, k, v) }
		return b.stepPerSeq(ctx, name, n, kSrc, vSrc, appendTo, func(s int) error {
			k, v, err := c.View(s)
			if err == nil {
				_, err = b.e.DecodeInto(ctx, b.o1, nil, b.q1, k, v, attention.DecodeOptions{})
			}
			return err
		})
	}
	return b.stepBatched(name, n, kSrc, vSrc, func(appends []memory.TensorAppend) error {
		return c.AppendTensorsBatch(ctx, appends)
	}, func() error {
		_, err := b.e.DecodeCache(ctx, b.o, nil, b.q, c.KVCache, b.all, attention.DecodeOptions{})
		return err
	})
}

// step is one step on a quantized cache: one batched append (quantized on the device) and one
// DecodeQuantizedCache of all sequences or, with -per-seq, an append, then a view and a
// DecodeQuantizedInto, per sequence.
func (c quantCache) step(ctx context.Context, b *cacheBench, name string, n int, kSrc, vSrc *memory.Tensor) error {
	if b.perSeq {
		return b.stepPerSeq(ctx, name, n, kSrc, vSrc, func(s int, k, v *memory.Tensor) error {
			return c.AppendTensors(ctx, s, k, v)
		}, func(s int) error {
			k, v, err := c.View(ctx, s)
			if err != nil {
				return err
			}
			defer k.Close()
			defer v.Close()
			_, err = b.e.DecodeQuantizedInto(ctx, b.o1, nil, b.q1, k, v, attention.QuantizedDecodeOptions{})
			return err
		})
	}
	return b.stepBatched(name, n, kSrc, vSrc, func(appends []memory.TensorAppend) error {
		return c.AppendTensorsBatch(ctx, appends)
	}, func() error {
		_, err := b.e.DecodeQuantizedCache(ctx, b.o, nil, b.q, c.QuantizedKVCache, b.all, attention.QuantizedDecodeOptions{})
		return err
	})
}

// stepBatched is a step in two calls: appendAll appends kSrc and vSrc to every sequence, which
// hold n tokens, then decodeAll decodes all of them.
func (b *cacheBench) stepBatched(name string, n int, kSrc, vSrc *memory.Tensor,
	appendAll func([]memory.TensorAppend) error, decodeAll func() error) error {
	appends := make([]memory.TensorAppend, b.seqs)
	for s := range appends {
		appends[s] = memory.TensorAppend{Seq: s, K: kSrc, V: vSrc}
	}
	if err := appendAll(appends); err != nil {
		return fmt.Errorf("cache-bench: %s: append at %d tokens: %w", name, n, err)
	}
	b.appended = time.Now()
	if err := decodeAll(); err != nil {
		return fmt.Errorf("cache-bench: %s: decode at %d tokens: %w", name, n+kSrc.Shape[1], err)
	}
	return nil
}

// stepPerSeq is a step in calls per sequence: appendTo appends kSrc and vSrc to every sequence,
// which hold n tokens, then decode decodes each (over its view).
func (b *cacheBench) stepPerSeq(ctx context.Context, name string, n int, kSrc, vSrc *memory.Tensor,
	appendTo func(seq int, k, v *memory.Tensor) error, decode func(seq int) error) error {
	for s := range b.seqs {
		if err := appendTo(s, kSrc, vSrc); err != nil {
			return fmt.Errorf("cache-bench: %s: append to sequence %d at %d tokens: %w", name, s, n, err)
		}
	}
	b.appended = time.Now()
	for s := range b.seqs {
		if err := decode(s); err != nil {
			return fmt.Errorf("cache-bench: %s: decode of sequence %d at %d tokens: %w", name, s, n+kSrc.Shape[1], err)
		}
	}
	return nil
}

// commitCost times n commits of one page of K and one of V to a sequence (Reserve with no
// headroom, pages reused from the free list): the time Reserve takes to submit the binds, and
// the time until they are done.
func (b *cacheBench) commitCost(ctx context.Context, n int) (submit, done []time.Duration, err error) {
	cfg := b.config(0, 0)
	page := uint64(0)
	probe, err := memory.NewKVCache(b.e.Allocator(), memory.KVCacheConfig{Sequences: 1, MaxLen: 1, Heads: 1, HeadDim: 1, DType: memory.F32})
	if err != nil {
		return nil, nil, err
	}
	page = probe.PageSize()
	probe.Close()
	tokenBytes := uint64(cfg.Heads * cfg.HeadDim * cfg.DType.Size())
	perPage := max(1, int(page/tokenBytes))
	cfg.Sequences = 1
	cfg.MaxLen = min(n*perPage, b.length)
	pages := (cfg.MaxLen + perPage - 1) / perPage
	c, err := memory.NewKVCache(b.e.Allocator(), cfg)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	for len(submit) < n {
		if err := c.Reserve(0, cfg.MaxLen); err != nil { // every page allocated once, then reused
			return nil, nil, err
		}
		if err := c.Release(0); err != nil {
			return nil, nil, err
		}
		if err := c.WaitBinds(ctx); err != nil {
			return nil, nil, err
		}
		for i := 1; i <= pages && len(submit) < n; i++ {
			t0 := time.Now()
			if err := c.Reserve(0, min(i*perPage, cfg.MaxLen)); err != nil {
				return nil, nil, err
			}
			t1 := time.Now()
			if err := c.WaitBinds(ctx); err != nil {
				return nil, nil, err
			}
			submit, done = append(submit, t1.Sub(t0)), append(done, time.Since(t0))
		}
	}
	return submit, done, nil
}

// percentile returns the p-th percentile (nearest rank) of a non-empty sample.
func percentile(ts []time.Duration, p float64) time.Duration {
	s := slices.Clone(ts)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func writeCacheTable(w io.Writer, rep *cacheReport) {
	fmt.Fprintf(w, "device: %s (%s); binds on %s\n", rep.Device, rep.Driver, rep.BindQueue)
	calls := "one append and one decode of all sequences a step"
	if rep.PerSeq {
		calls = "an append and a decode per sequence"
	}
	quantized := rep.KV != "" && rep.KV != rep.DType
	kv := ""
	if quantized {
		kv = ", K/V " + rep.KV
	}
	extras := fmt.Sprintf(", %d spare pages", rep.SparePages)
	if rep.SyncBinds {
		extras += ", binds waited for"
	}
	fmt.Fprintf(w, "%d sequences grown to %d tokens, %d a step, each decoded (Hq=%d Hk=%d d=%d %s%s; %s); pages of %s, headroom %d tokens%s\n",
		rep.Seqs, rep.Len, rep.Step, rep.Hq, rep.Hk, rep.D, rep.DType, kv, calls, bytesString(rep.PageBytes), rep.Headroom, extras)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "cache\tsteps\tp50 ms\tp99 ms\tmax ms\tmean ms\tbind batches\tsteps with binds\tp50 of those\tcommitted/needed\t"
	if quantized {
		head += "committed\t" + rep.DType + " cache needs\tcommitted/" + rep.DType + "\t"
	}
	fmt.Fprintln(tw, head)
	for _, l := range rep.Loops {
		ratio := "-"
		if l.NeededBytes > 0 {
			ratio = fmt.Sprintf("%.4f", float64(l.CommittedBytes)/float64(l.NeededBytes))
		}
		bind := "-"
		if l.StepsWithBinds > 0 {
			bind = fmt.Sprintf("%.3f", l.P50BindMS)
		}
		line := fmt.Sprintf("%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%d\t%d\t%s\t%s\t", l.Name, l.Steps, l.P50MS, l.P99MS, l.MaxMS, l.MeanMS,
			l.BindBatches, l.StepsWithBinds, bind, ratio)
		if quantized {
			vs := "-"
			if l.FloatBytes > 0 {
				vs = fmt.Sprintf("%.4f", float64(l.CommittedBytes)/float64(l.FloatBytes))
			}
			line += fmt.Sprintf("%s\t%s\t%s\t", bytesString(l.CommittedBytes), bytesString(l.FloatBytes), vs)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	for _, l := range rep.Loops {
		if l.StepsWithBinds > 0 {
			fmt.Fprintf(w, "%s: steps with binds: append p50 %.3f ms, decode p50 %.3f ms; host time submitting a bind batch %.3f ms; %d allocations of page memory, %.3f ms each, %.1f ms of them in the steps' calls\n",
				l.Name, l.P50BindAppendMS, l.P50BindDecodeMS, l.SubmitMSPerBatch, l.Allocations, l.MSPerAllocation, l.AllocateMSInCalls)
		}
	}
	fmt.Fprintf(w, "p99 step, grown / preallocated: %.3f (target: at most 1.10)\n", rep.P99Ratio)
	fmt.Fprintf(w, "one page commit (a page of K and one of V): submit p50 %.1f us, p99 %.1f us; done p50 %.1f us, p99 %.1f us\n",
		rep.CommitSubmitP50US, rep.CommitSubmitP99US, rep.CommitDoneP50US, rep.CommitDoneP99US)
}
