package memory

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/vk"
)

// testBlock is the block size of the tests' allocators: small, so that filling a block is cheap.
const testBlock = 1 << 20

// newTestAllocator opens device 0 with the validation layer where installed (a validation error,
// a leaked VkBuffer or VkDeviceMemory included, fails the test at cleanup) and returns an
// allocator on it with testBlock-sized blocks, closed at cleanup before the device.
func newTestAllocator(t *testing.T) *Allocator {
	t.Helper()
	in := testenv.Instance(t)
	infos, err := in.PhysicalDevices()
	if err == nil && len(infos) == 0 {
		err = vk.ErrNoDevice
	}
	if err != nil {
		testenv.NoDevice(t, err)
	}
	d, err := in.OpenDevice(0, vk.DeviceOptions{})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	a := NewAllocator(d)
	a.blockSize = testBlock
	t.Cleanup(a.Close)
	return a
}

// checkFree checks a block's free list: sorted, in bounds, coalesced, not empty spans.
func checkFree(t *testing.T, blk *block) {
	t.Helper()
	for i, s := range blk.free {
		require.NotZero(t, s.size, "free %v", blk.free)
		require.LessOrEqual(t, s.off+s.size, blk.mem.Size(), "free %v", blk.free)
		if i > 0 {
			prev := blk.free[i-1]
			require.Less(t, prev.off+prev.size, s.off, "free list not sorted and coalesced: %v", blk.free)
		}
	}
}

func TestSubAllocation(t *testing.T) {
	a := newTestAllocator(t)
	r := rand.New(rand.NewPCG(1, 2))
	var bufs []*Buffer
	var live uint64
	for i := 0; i < 200; i++ {
		size := uint64(1 + r.IntN(3000))
		b, err := a.NewBuffer(size, DeviceLocal)
		require.NoError(t, err)
		bufs = append(bufs, b)
		reqSize, align, _ := b.Requirements()
		require.GreaterOrEqual(t, reqSize, size)
		require.False(t, b.dedicated)
		require.Zero(t, b.off%align, "buffer %d at %d, alignment %d", i, b.off, align)
		live += b.size
	}
	st := a.Stats()
	require.Equal(t, 200, st.LiveBuffers)
	require.Equal(t, live, st.LiveBytes)
	require.Zero(t, st.Dedicated)
	require.Equal(t, 1, st.Blocks, "200 small buffers should share one block")
	require.Equal(t, uint64(testBlock), st.BlockBytes)
	require.LessOrEqual(t, st.FreeBlockBytes, st.BlockBytes-live, "free bytes plus alignment padding")

	// No two buffers overlap: write each one's index into all its bytes and read them back.
	sorted := slices.Clone(bufs)
	slices.SortFunc(sorted, func(x, y *Buffer) int { return int(x.off) - int(y.off) })
	for i := 1; i < len(sorted); i++ {
		require.LessOrEqual(t, sorted[i-1].off+sorted[i-1].size, sorted[i].off)
	}
	if bufs[0].HostVisible() {
		for i, b := range bufs {
			for j := range b.Bytes() {
				b.Bytes()[j] = byte(i)
			}
		}
		for i, b := range bufs {
			for _, x := range b.Bytes() {
				require.Equal(t, byte(i), x)
			}
		}
	}

	// Close them in random order: the free list stays sorted and coalesced, and ends whole.
	blk := bufs[0].blk
	for _, i := range r.Perm(len(bufs)) {
		bufs[i].Close()
		checkFree(t, blk)
	}
	require.Equal(t, []span{{0, testBlock}}, blk.free)
	st = a.Stats()
	require.Zero(t, st.LiveBuffers)
	require.Zero(t, st.LiveBytes)
	require.Equal(t, st.BlockBytes, st.FreeBlockBytes)
}

func TestAlignment(t *testing.T) {
	a := newTestAllocator(t)
	// Odd sizes force odd ends; every next buffer must still start aligned.
	for _, size := range []uint64{1, 3, 5, 17, 255, 4097, 1, 2, 3} {
		b, err := a.NewBuffer(size, DeviceLocal)
		require.NoError(t, err)
		defer b.Close()
		_, align, _ := b.Requirements()
		require.NotZero(t, align)
		require.Zero(t, b.off%align, "size %d at offset %d, alignment %d", size, b.off, align)
	}
	// take honours alignments larger than the device's.
	blk := &block{free: []span{{3, 1000}}}
	off, ok := blk.take(10, 256)
	require.True(t, ok)
	require.Equal(t, uint64(256), off)
	require.Equal(t, []span{{3, 253}, {266, 737}}, blk.free)
	_, ok = blk.take(800, 256)
	require.False(t, ok, "800 bytes at a 256 alignment do not fit in 3..1003 once 256..266 is taken")
	blk.give(256, 10)
	require.Equal(t, []span{{3, 1000}}, blk.free)
}

func TestFreeCoalesces(t *testing.T) {
	a := newTestAllocator(t)
	// Fill one block exactly with eighths.
	var bufs []*Buffer
	for i := 0; i < 8; i++ {
		b, err := a.NewBuffer(testBlock/8, DeviceLocal)
		require.NoError(t, err)
		require.Equal(t, uint64(testBlock/8), b.size)
		bufs = append(bufs, b)
	}
	st := a.Stats()
	require.Equal(t, 1, st.Blocks)
	require.Zero(t, st.FreeBlockBytes)
	blk := bufs[0].blk
	for _, b := range bufs {
		require.Same(t, blk, b.blk)
	}
	// A ninth needs a second block.
	extra, err := a.NewBuffer(testBlock/8, DeviceLocal)
	require.NoError(t, err)
	require.NotSame(t, blk, extra.blk)
	require.Equal(t, 2, a.Stats().Blocks)
	extra.Close()

	// Free every other one, then the rest: each free merges with one or both neighbours.
	for _, i := range []int{1, 3, 5, 7, 0, 6, 2, 4} {
		bufs[i].Close()
		checkFree(t, blk)
	}
	require.Equal(t, []span{{0, testBlock}}, blk.free)

	// The coalesced block holds a whole-block request again...
	off, ok := blk.take(testBlock, 1)
	require.True(t, ok)
	require.Zero(t, off)
	require.Empty(t, blk.free)
	blk.give(0, testBlock)
	// ...and two of the largest buffers that are sub-allocated, without a third block.
	half := uint64(testBlock/2 - 4096)
	b1, err := a.NewBuffer(half, DeviceLocal)
	require.NoError(t, err)
	defer b1.Close()
	b2, err := a.NewBuffer(half, DeviceLocal)
	require.NoError(t, err)
	defer b2.Close()
	require.False(t, b1.dedicated || b2.dedicated)
	require.Equal(t, 2, a.Stats().Blocks)
}

func TestDedicated(t *testing.T) {
	a := newTestAllocator(t)
	small, err := a.NewBuffer(100, DeviceLocal)
	require.NoError(t, err)
	defer small.Close()
	before := a.Stats()
	for _, size := range []uint64{testBlock / 2, testBlock, 3*testBlock + 12} {
		b, err := a.NewBuffer(size, DeviceLocal)
		require.NoError(t, err)
		require.True(t, b.dedicated, "%d bytes", size)
		require.Zero(t, b.off)
		st := a.Stats()
		require.Equal(t, before.Blocks, st.Blocks, "a dedicated buffer takes no block")
		require.Equal(t, before.FreeBlockBytes, st.FreeBlockBytes)
		require.Equal(t, 1, st.Dedicated)
		require.Equal(t, b.size, st.DedicatedBytes)
		require.Equal(t, before.LiveBytes+b.size, st.LiveBytes)
		if b.HostVisible() {
			raw := b.Bytes()
			require.Len(t, raw, int(b.Size()))
			raw[0], raw[len(raw)-1] = 1, 2
		}
		b.Close()
		require.Equal(t, before, a.Stats())
	}
}

// A Mapped buffer is host-visible and coherent, and has an allocation of its own.
func TestMapped(t *testing.T) {
	a := newTestAllocator(t)
	before := a.Stats()
	b, err := a.NewBuffer(256, Mapped)
	require.NoError(t, err)
	require.True(t, b.HostVisible())
	require.True(t, b.dedicated, "no block of a small BAR heap for one table")
	raw := b.Bytes()
	require.Len(t, raw, int(b.Size()))
	raw[0], raw[255] = 1, 2
	require.Equal(t, before.Blocks, a.Stats().Blocks)
	b.Close()
	require.Equal(t, before, a.Stats())
}

// The memory type each usage takes on the memory types of a few devices: the H100's (a
// resizable BAR over the whole device-local heap), a discrete GPU's with a 256 MiB BAR heap, one
// without device-local host-visible memory, and a CPU device's single type; and only among the
// types a buffer allows.
func TestChooseMemoryType(t *testing.T) {
	const dl, hv, hc, cached = vk.MemoryDeviceLocal, vk.MemoryHostVisible, vk.MemoryHostCoherent, vk.MemoryHostCached
	type ty struct {
		heap  int
		flags vk.MemoryFlags
	}
	for _, c := range []struct {
		name                   string
		heaps                  []uint64
		types                  []ty
		bits                   uint32
		local, staging, mapped int
	}{
		{"h100", []uint64{79 << 30, 94 << 30}, []ty{{1, 0}, {0, dl}, {1, hv | hc}, {1, hv | hc | cached}, {0, dl | hv | hc}}, 0x1f, 1, 3, 4},
		{"256 MiB BAR", []uint64{16 << 30, 32 << 30, 256 << 20}, []ty{{0, dl}, {1, hv | hc}, {1, hv | hc | cached}, {2, dl | hv | hc}}, 0xf, 0, 2, 3},
		{"no BAR", []uint64{8 << 30, 16 << 30}, []ty{{0, dl}, {1, hv | hc | cached}}, 0x3, 0, 1, 1},
		{"cpu", []uint64{24 << 30}, []ty{{0, dl | hv | hc | cached}}, 0x1, 0, 0, 0},
		{"h100, no BAR type allowed", []uint64{79 << 30, 94 << 30}, []ty{{1, 0}, {0, dl}, {1, hv | hc}, {1, hv | hc | cached}, {0, dl | hv | hc}}, 0xf, 1, 3, 2},
	} {
		var heaps []vk.MemoryHeap
		for _, size := range c.heaps {
			heaps = append(heaps, vk.MemoryHeap{Size: size})
		}
		var types []vk.MemoryType
		for i, x := range c.types {
			types = append(types, vk.MemoryType{Index: i, Heap: x.heap, Flags: x.flags})
		}
		for usage, want := range map[Usage]int{DeviceLocal: c.local, Staging: c.staging, Mapped: c.mapped} {
			got, err := chooseMemoryType(types, heaps, c.bits, usage)
			require.NoError(t, err, "%s, usage %d", c.name, usage)
			require.Equal(t, want, got.Index, "%s, usage %d", c.name, usage)
		}
	}
	_, err := chooseMemoryType([]vk.MemoryType{{Index: 0, Flags: dl}}, []vk.MemoryHeap{{Size: 1 << 30}}, 1, Mapped)
	require.ErrorContains(t, err, "no memory type")
}

func TestZeroSizedBuffer(t *testing.T) {
	a := newTestAllocator(t)
	_, err := a.NewBuffer(0, DeviceLocal)
	require.ErrorContains(t, err, "zero-sized")
	require.Zero(t, a.Stats().LiveBuffers)
}

// testValues are n values of dt: specials first (signed zeros, infinities, NaN, the smallest
// subnormals and largest finite numbers of the type), then random ones spanning many binades.
func testValues(r *rand.Rand, dt DType, n int) []float32 {
	specials := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), 1, -1}
	switch dt {
	case F16:
		specials = append(specials, Float16From(1), Float16From(0x8001), Float16From(0x7bff), Float16From(0xfbff))
	case BF16:
		specials = append(specials, BFloat16From(1), BFloat16From(0x8001), BFloat16From(0x7f7f))
	case F32:
		specials = append(specials, math.SmallestNonzeroFloat32, -math.MaxFloat32)
	}
	out := make([]float32, n)
	for i := range out {
		if i < len(specials) {
			out[i] = specials[i]
		} else {
			out[i] = dt.Round(float32(r.NormFloat64() * math.Exp2(float64(r.IntN(20)-10))))
		}
	}
	return out
}

func requireSameBits(t *testing.T, dt DType, want, got []float32) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		if math.IsNaN(float64(want[i])) {
			require.True(t, math.IsNaN(float64(got[i])), "%s [%d] = %v, want NaN", dt, i, got[i])
			continue
		}
		require.Equal(t, math.Float32bits(want[i]), math.Float32bits(got[i]), "%s [%d] = %v, want %v", dt, i, got[i], want[i])
	}
}

func TestTensorRoundTrip(t *testing.T) {
	a := newTestAllocator(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	for _, stage := range []bool{false, true} {
		a.alwaysStage = stage
		for _, dt := range []DType{F32, F16, BF16} {
			for _, shape := range [][]int{{1}, {3}, {7}, {3, 5, 7}, {1023}, {2, 2049}, {300001}} {
				x, err := a.NewTensor(dt, shape...)
				require.NoError(t, err)
				require.Equal(t, shape, x.Shape)
				require.Equal(t, contiguous(shape), x.Strides)
				require.True(t, x.Contiguous())
				data := testValues(r, dt, x.Len())
				require.NoError(t, x.Upload(ctx, data))
				got, err := x.Download(ctx)
				require.NoError(t, err)
				requireSameBits(t, dt, data, got)

				// Fill writes the pattern into every element.
				require.NoError(t, x.Fill(ctx, 0x3c003c00)) // f16 1.0 twice; f32 ~0.0078; bf16 1.0
				got, err = x.Download(ctx)
				require.NoError(t, err)
				want := map[DType]float32{F32: math.Float32frombits(0x3c003c00), F16: 1, BF16: BFloat16From(0x3c00)}[dt]
				for i, g := range got {
					require.Equal(t, want, g, "%s %v stage=%v: element %d after Fill", dt, shape, stage, i)
				}
				x.Close()
			}
		}
	}
	st := a.Stats()
	require.Zero(t, st.LiveBuffers, "the staging buffer is not counted as live")
	require.NotZero(t, st.StagingBytes, "transfers went through staging")
}

// TestViewTransfers writes through a contiguous offset view and reads the whole tensor back.
func TestViewTransfers(t *testing.T) {
	a := newTestAllocator(t)
	ctx := context.Background()
	for _, stage := range []bool{false, true} {
		a.alwaysStage = stage
		for _, dt := range []DType{F32, F16, BF16} {
			x, err := a.NewTensor(dt, 11)
			require.NoError(t, err)
			require.NoError(t, x.Upload(ctx, make([]float32, 11)))
			v, err := x.View([]int{2, 2}, []int{2, 1}, 3)
			require.NoError(t, err)
			require.True(t, v.Contiguous())
			require.NoError(t, v.Upload(ctx, []float32{1, 2, 3, 4}))
			got, err := x.Download(ctx)
			require.NoError(t, err)
			require.Equal(t, []float32{0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0}, got, "%s stage=%v", dt, stage)
			got, err = v.Download(ctx)
			require.NoError(t, err)
			require.Equal(t, []float32{1, 2, 3, 4}, got)
			r, err := x.Reshape(11, 1)
			require.NoError(t, err)
			got, err = r.Download(ctx)
			require.NoError(t, err)
			require.Len(t, got, 11)

			// A strided view cannot be transferred.
			s, err := x.View([]int{3}, []int{2}, 0)
			require.NoError(t, err)
			require.False(t, s.Contiguous())
			require.ErrorContains(t, s.Upload(ctx, []float32{1, 2, 3}), "contiguous")
			_, err = s.Download(ctx)
			require.ErrorContains(t, err, "contiguous")
			require.ErrorContains(t, x.Upload(ctx, []float32{1, 2}), "2 values for a tensor of 11")
			x.Close()
		}
	}
}

func TestNewTensorErrors(t *testing.T) {
	a := newTestAllocator(t)
	limit := uint64(a.dev.Info().MaxStorageBufferRange)
	before := a.Stats()
	for _, c := range []struct {
		name  string
		dt    DType
		shape []int
		want  string
	}{
		{"no dims", F32, nil, "at least one dimension"},
		{"zero", F32, []int{2, 0, 3}, "dimension 1 is 0"},
		{"negative", F16, []int{-4}, "dimension 0 is -4"},
		{"negatives", F16, []int{-1, -4}, "dimension 0 is -1"},
		{"negative after huge", F32, []int{1 << 40, 1 << 40, -1}, "dimension 2 is -1"},
		{"dtype", DType(7), []int{4}, "invalid dtype 7"},
		{"dtype negative", DType(-1), []int{4}, "invalid dtype -1"},
		{"over range", F32, []int{int(limit/4) + 1}, "maxStorageBufferRange"},
		{"over range 16-bit", BF16, []int{2, int(limit/4) + 1}, "maxStorageBufferRange"},
		{"one 16-bit element over", F16, []int{int(limit/2) | 1}, "maxStorageBufferRange"},
		// 2^62+1 f32 elements are 4 bytes modulo 2^64: an overflow must not pass the check.
		{"wraps uint64", F32, []int{1 << 31, 1 << 31, 1 << 0, 1 << 0, 2}, "maxStorageBufferRange"},
		{"wraps to small", F32, []int{1<<62 + 1}, "maxStorageBufferRange"},
		{"overflows int", F16, []int{math.MaxInt, math.MaxInt}, "maxStorageBufferRange"},
	} {
		t.Run(c.name, func(t *testing.T) {
			x, err := a.NewTensor(c.dt, c.shape...)
			if x != nil {
				x.Close()
			}
			require.ErrorContains(t, err, c.want)
			require.Nil(t, x)
			require.Equal(t, before, a.Stats(), "nothing allocated")
		})
	}
	// At the limit exactly (rounded down to whole words) it is allowed; not allocated here, as
	// that could be gigabytes: checked by the size arithmetic alone.
	require.LessOrEqual(t, (limit/4)*4, limit)
}

func TestViewErrors(t *testing.T) {
	a := newTestAllocator(t)
	x, err := a.NewTensor(F32, 4, 6)
	require.NoError(t, err)
	defer x.Close()
	for _, c := range []struct {
		name           string
		shape, strides []int
		offset         int
		want           string
	}{
		{"no dims", nil, nil, 0, "at least one dimension"},
		{"rank mismatch", []int{4, 6}, []int{6}, 0, "2 dims but 1 strides"},
		{"zero dim", []int{0, 6}, []int{6, 1}, 0, "bad dim 0"},
		{"negative dim", []int{4, -6}, []int{6, 1}, 0, "bad dim 1"},
		{"negative stride", []int{4, 6}, []int{-6, 1}, 23, "bad dim 0"},
		{"negative offset", []int{4}, []int{1}, -1, "offset -1"},
		{"offset past end", []int{1}, []int{1}, 24, "offset 24"},
		{"one past end", []int{4, 7}, []int{6, 1}, 0, "beyond the buffer"},
		{"offset pushes past end", []int{24}, []int{1}, 1, "beyond the buffer"},
		// (3-1) * 2^62 overflows int to a negative number; it must not pass.
		{"stride overflow", []int{3}, []int{1 << 62}, 0, "beyond the buffer"},
		{"stride overflow 2", []int{2, 2}, []int{math.MaxInt, math.MaxInt}, 0, "beyond the buffer"},
		{"size overflow", []int{math.MaxInt}, []int{1}, 0, "beyond the buffer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := x.View(c.shape, c.strides, c.offset)
			require.ErrorContains(t, err, c.want)
			require.Nil(t, v)
		})
	}
	// Valid views: broadcast (stride 0), the last element alone, a transpose.
	for _, c := range []struct {
		shape, strides []int
		offset         int
	}{
		{[]int{5, 6}, []int{0, 1}, 18}, {[]int{1}, []int{1}, 23}, {[]int{6, 4}, []int{1, 6}, 0},
	} {
		_, err := x.View(c.shape, c.strides, c.offset)
		require.NoError(t, err, "%v", c)
	}

	for _, c := range []struct {
		name  string
		shape []int
		want  string
	}{
		{"count", []int{5, 5}, "changes the element count"},
		{"negatives", []int{-4, -6}, "dimension 0 is -4"},
		{"zero", []int{24, 0}, "dimension 1 is 0"},
		{"none", nil, "changes the element count"}, // 1 element, not 24
		{"overflow", []int{1 << 32, 1 << 32, 24}, "changes the element count"},
	} {
		t.Run("reshape "+c.name, func(t *testing.T) {
			r, err := x.Reshape(c.shape...)
			require.ErrorContains(t, err, c.want)
			require.Nil(t, r)
		})
	}
	tr, err := x.View([]int{6, 4}, []int{1, 6}, 0)
	require.NoError(t, err)
	_, err = tr.Reshape(24)
	require.ErrorContains(t, err, "non-contiguous")
	r, err := x.Reshape(2, 3, 4)
	require.NoError(t, err)
	require.Equal(t, []int{12, 4, 1}, r.Strides)
	require.Zero(t, a.Stats().LiveBuffers-1, "views allocate nothing")
}

func TestCloseIdempotent(t *testing.T) {
	a := newTestAllocator(t)
	x, err := a.NewTensor(F16, 5)
	require.NoError(t, err)
	v, err := x.View([]int{2}, []int{1}, 2)
	require.NoError(t, err)
	require.Equal(t, 1, a.Stats().LiveBuffers)
	v.Close() // a view does not own the buffer
	v.Close()
	require.False(t, x.Closed())
	require.False(t, v.Closed())
	require.Equal(t, 1, a.Stats().LiveBuffers)
	x.Close()
	x.Close()
	require.True(t, x.Closed())
	require.True(t, v.Closed(), "a view is closed with its tensor")
	require.Zero(t, a.Stats().LiveBuffers)

	b, err := a.NewBuffer(64, DeviceLocal)
	require.NoError(t, err)
	b.Close()
	b.Close()
	require.True(t, b.Closed())
	require.Zero(t, a.Stats().LiveBuffers)
	require.Nil(t, b.Bytes())
	require.False(t, b.HostVisible())

	var nilT *Tensor
	nilT.Close()
	require.True(t, nilT.Closed())
	var nilB *Buffer
	nilB.Close()
	var nilA *Allocator
	nilA.Close()
	a.Close()
	a.Close()
}

func TestUseAfterClose(t *testing.T) {
	a := newTestAllocator(t)
	ctx := context.Background()
	x, err := a.NewTensor(F32, 8)
	require.NoError(t, err)
	v, err := x.View([]int{4}, []int{1}, 4)
	require.NoError(t, err)
	x.Close()
	for name, tt := range map[string]*Tensor{"tensor": x, "view": v} {
		require.ErrorIs(t, tt.Upload(ctx, make([]float32, tt.Len())), ErrClosed, name)
		_, err = tt.Download(ctx)
		require.ErrorIs(t, err, ErrClosed, name)
		require.ErrorIs(t, tt.Fill(ctx, 0), ErrClosed, name)
		_, err = tt.View([]int{1}, []int{1}, 0)
		require.ErrorIs(t, err, ErrClosed, name)
		_, err = tt.Reshape(tt.Len())
		require.ErrorIs(t, err, ErrClosed, name)
	}
}

// TestAllocatorClose: closing the allocator releases the buffers still open (the validation
// layer reports a VkBuffer or VkDeviceMemory left behind when the device closes), and their
// tensors then fail cleanly instead of touching freed memory.
func TestAllocatorClose(t *testing.T) {
	for _, stage := range []bool{false, true} {
		a := newTestAllocator(t)
		a.alwaysStage = stage
		ctx := context.Background()
		small, err := a.NewTensor(F32, 100)
		require.NoError(t, err)
		big, err := a.NewTensor(F16, testBlock) // dedicated
		require.NoError(t, err)
		require.NoError(t, small.Upload(ctx, make([]float32, 100)))
		buf, err := a.NewBuffer(16, Staging)
		require.NoError(t, err)
		require.Equal(t, 3, a.Stats().LiveBuffers)

		a.Close()
		a.Close()
		for _, x := range []*Tensor{small, big} {
			require.True(t, x.Closed())
			require.ErrorIs(t, x.Upload(ctx, make([]float32, x.Len())), ErrClosed)
			_, err = x.Download(ctx)
			require.ErrorIs(t, err, ErrClosed)
			require.ErrorIs(t, x.Fill(ctx, 0), ErrClosed)
			x.Close()
		}
		require.True(t, buf.Closed())
		require.Nil(t, buf.Bytes())
		buf.Close()
		_, err = a.NewBuffer(16, DeviceLocal)
		require.ErrorIs(t, err, ErrClosed)
		_, err = a.NewTensor(F32, 4)
		require.ErrorIs(t, err, ErrClosed)
		st := a.Stats()
		require.Zero(t, st.LiveBuffers)
		require.Zero(t, st.Blocks)
	}
}

func TestConcurrentAllocations(t *testing.T) {
	a := newTestAllocator(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 5))
			var held []*Tensor
			for i := 0; i < 60; i++ {
				x, err := a.NewTensor(F32, 1+r.IntN(5000))
				if err != nil {
					errs <- err
					return
				}
				data := make([]float32, x.Len())
				for j := range data {
					data[j] = float32(g*1000 + i)
				}
				if err := x.Upload(ctx, data); err != nil {
					errs <- err
					return
				}
				got, err := x.Download(ctx)
				if err != nil {
					errs <- err
					return
				}
				if !slices.Equal(got, data) {
					errs <- errors.New("a concurrent transfer corrupted a tensor")
					return
				}
				held = append(held, x)
				if r.IntN(2) == 0 {
					k := r.IntN(len(held))
					held[k].Close()
					held = slices.Delete(held, k, k+1)
				}
			}
			for _, x := range held {
				x.Close()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	st := a.Stats()
	require.Zero(t, st.LiveBuffers)
	require.Zero(t, st.LiveBytes)
	require.Equal(t, st.BlockBytes, st.FreeBlockBytes)
}
