package attention

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/shaders"
	"github.com/vkattn/vkattn/vk"
)

// A forced split count is taken as given; the automatic one aims at the target workgroups
// within its bounds, and its chunks are whole tiles that cover the longest sequence with none
// empty.
func TestDecodeSplit(t *testing.T) {
	n, chunk := decodeSplit(7, 1024, 64, 100, 32, 1000)
	require.Equal(t, [2]int{7, 15}, [2]int{n, chunk})
	n, chunk = decodeSplit(300, 1024, 64, 100, 32, 1000) // more chunks than keys: chunks of one key
	require.Equal(t, [2]int{300, 1}, [2]int{n, chunk})

	// The decode shape B=8, Hk=8, one row block at a target of 1024 workgroups: 16 chunks at 128k
	// keys and at 4k keys.
	n, chunk = decodeSplit(0, 1024, 64, 128<<10, 32, 1<<20)
	require.Equal(t, [2]int{16, 8 << 10}, [2]int{n, chunk})
	n, chunk = decodeSplit(0, 1024, 64, 4<<10, 32, 1<<20)
	require.Equal(t, [2]int{16, 256}, [2]int{n, chunk})

	for _, target := range []int{1, 4, 256, 1024} {
		for _, wg := range []int{1, 3, 64, 2048} {
			for _, maxLk := range []int{1, 31, 255, 256, 257, 1000, 4096, 1 << 17} {
				for _, maxN := range []int{1, 5, 1 << 20} {
					n, chunk := decodeSplit(0, target, wg, maxLk, 32, maxN)
					what := []int{target, wg, maxLk, maxN, n, chunk}
					require.GreaterOrEqual(t, n, 1, what)
					require.LessOrEqual(t, n, min(decodeMaxSplits, maxN, max(1, (target+wg-1)/wg)), what)
					require.Zero(t, chunk%32, what)
					require.GreaterOrEqual(t, n*chunk, maxLk, what)
					require.Less(t, (n-1)*chunk, maxLk, "the longest sequence has no empty chunk: %v", what)
					if n > 1 {
						require.GreaterOrEqual(t, chunk, decodeMinChunk, what)
					}
				}
			}
		}
	}
}

func TestDecodeTargetWorkgroups(t *testing.T) {
	p := devices.Profile{}
	p.Type = vk.DeviceCPU
	require.Equal(t, 2*runtime.NumCPU(), decodeTargetWorkgroups(&p, 32))
	p.Type = vk.DeviceIntegrated
	require.Equal(t, 256, decodeTargetWorkgroups(&p, 128))
	p.Type = vk.DeviceDiscrete
	require.Equal(t, 512, decodeTargetWorkgroups(&p, 128))
	require.Equal(t, 2048, decodeTargetWorkgroups(&p, 32))
}

// The subgroup decode kernel's lane layout (decode_stream.glsl) for the common cases: a lane
// reads one 16-byte vector of an fp16 key at d=128, and a 32-lane subgroup two keys at once.
func TestStreamLayout(t *testing.T) {
	require.Equal(t, streamLayout{vw: 4, roww: 64, vpr: 16, lpk: 16, vpl: 1, kps: 2}, newStreamLayout(128, 16, 32))
	require.Equal(t, streamLayout{vw: 8, roww: 128, vpr: 16, lpk: 16, vpl: 1, kps: 2}, newStreamLayout(128, 32, 32))
	require.Equal(t, streamLayout{vw: 2, roww: 32, vpr: 16, lpk: 16, vpl: 1, kps: 2}, newStreamLayout(128, 8, 32))
	require.Equal(t, streamLayout{vw: 1, roww: 16, vpr: 16, lpk: 16, vpl: 1, kps: 2}, newStreamLayout(128, 4, 32))
	require.Equal(t, streamLayout{vw: 4, roww: 40, vpr: 10, lpk: 16, vpl: 1, kps: 2}, newStreamLayout(80, 16, 32))
	require.Equal(t, streamLayout{vw: 8, roww: 256, vpr: 32, lpk: 8, vpl: 4, kps: 1}, newStreamLayout(256, 32, 8))
	for _, bits := range []uint32{32, 16, 8, 4} {
		for _, sg := range []uint32{4, 8, 16, 32, 64} {
			for _, d := range HeadDims {
				l := newStreamLayout(uint32(d), bits, sg)
				what := []any{bits, sg, d, l}
				require.Equal(t, sg, l.lpk*l.kps, what...)
				require.GreaterOrEqual(t, l.lpk*l.vpl, l.vpr, "every vector has a lane: %v", what)
				require.GreaterOrEqual(t, l.vpr*l.vw*32/bits, uint32(d), what...)
			}
		}
	}
}

// forSimulatedDecodeTiers calls f for each simulated device at each subgroup width it may run
// (p.SubgroupSize set to it) and each decode tier, scalar, subgroup and coopmat (where its fp16
// kernel's tiles fit), that it supports. It fails the test if there is none.
func forSimulatedDecodeTiers(t *testing.T, f func(name string, p *devices.Profile, tier devices.Tier)) {
	t.Helper()
	runs := 0
	for _, name := range devices.SimulatedNames() {
		p, err := devices.Simulated(name)
		require.NoError(t, err)
		for _, sg := range []uint32{4, 8, 16, 32, 64} {
			if sg < p.MinSubgroupSize || sg > p.MaxSubgroupSize {
				continue
			}
			p.SubgroupSize = sg
			for _, tier := range []devices.Tier{devices.TierScalar, devices.TierSubgroup, devices.TierCoopMat} {
				if tier == devices.TierCoopMat {
					if _, err := coopMatTiles(&p, 128, memory.F16); err != nil {
						require.NotEqual(t, "nvidia-h100", name, "the H100 runs the coopmat decode tier: %v", err)
						continue
					}
				}
				if p.Supports(tier) {
					f(name, &p, tier)
					runs++
				}
			}
		}
	}
	require.Positive(t, runs, "no simulated device runs a decode tier")
}

// Decode tiles fit each simulated device's shared memory and workgroup limits at every subgroup
// width it may run, for every head dim and any rows; rows that fit are all in one workgroup. At
// the subgroup tier the tiles come with the lane layout they are sized for.
func TestDecodeTilesFitSimulatedDevices(t *testing.T) {
	forSimulatedDecodeTiers(t, func(name string, p *devices.Profile, tier devices.Tier) {
		for _, d := range HeadDims {
			for _, rows := range []int{1, 3, 4, 8, 20, 32, 64, 128, 512} {
				tl, l, err := decodeTiles(tier, p, d, rows, 16, memory.F16, decodeTuning{})
				what := []any{name, p.SubgroupSize, tier, d, rows, tl}
				require.NoError(t, err, what...)
				require.LessOrEqual(t, decodeShared(tier, tl, uint32(d)), p.MaxSharedMemory, what...)
				require.LessOrEqual(t, tl.WG, min(p.MaxWorkgroupInvocations, p.MaxWorkgroupSize[0]), what...)
				require.Positive(t, tl.BC, what...)
				need := pow2Ceil(uint32(rows))
				if tier == devices.TierCoopMat {
					need = max(need, coopTM) // a subgroup's 16 rows
				}
				require.LessOrEqual(t, tl.BR, need, "no workgroup larger than the rows need: %v", what)
				if tier == devices.TierScalar {
					require.Equal(t, tl.BR, tl.WG, what...)
					require.Zero(t, l, what...)
					continue
				}
				if tier == devices.TierCoopMat {
					require.Zero(t, l, what...)
					require.Equal(t, coopTM*tl.WG/tl.SG, tl.BR, "16 rows a subgroup: %v", what)
					require.Zero(t, tl.BC%coopTM, what...)
					require.GreaterOrEqual(t, tl.BR, min(uint32(rows), coopTM), what...)
					for _, bits := range []uint32{8, 4} { // quantized K/V: scores and probabilities per scale group, scales
						tq, _, err := decodeTiles(tier, p, d, rows, bits, memory.F16, decodeTuning{})
						require.NoError(t, err, what...)
						require.LessOrEqual(t, decodeCoopMatShared(tq, uint32(d), bits), p.MaxSharedMemory, what...)
					}
					continue
				}
				require.Zero(t, tl.WG%tl.SG, what...)
				require.Zero(t, tl.BR%(tl.WG/tl.SG), "whole rows per subgroup: %v", what)
				require.Equal(t, newStreamLayout(uint32(d), 16, tl.SG), l, what...)
			}
		}
	})
	// The H100 decode shape (GQA 4, one new token): one workgroup per (chunk, kv head).
	p, err := devices.Simulated("nvidia-h100")
	require.NoError(t, err)
	p.SubgroupSize = 32
	tl, _, err := decodeTiles(devices.TierSubgroup, &p, 128, 4, 16, memory.F16, decodeTuning{})
	require.NoError(t, err)
	require.GreaterOrEqual(t, tl.BR, uint32(4))
	require.Equal(t, tl.SG, tl.WG, "one subgroup a workgroup by default")
	require.Equal(t, uint32(2*decodeStreamUnroll16), tl.BC, "2 keys a subgroup reads at once, 4 a lane")
	// The tuning settings reach the tiles: subgroups a workgroup within the workgroup limit, keys
	// a lane.
	tl, _, err = decodeTiles(devices.TierSubgroup, &p, 128, 4, 16, memory.F16, decodeTuning{subgroups: 4, unroll: 8})
	require.NoError(t, err)
	require.Equal(t, 4*tl.SG, tl.WG)
	require.Equal(t, uint32(16), tl.BC)
	p.MaxWorkgroupInvocations = 256
	tl, _, err = decodeTiles(devices.TierSubgroup, &p, 128, 4, 16, memory.F16, decodeTuning{subgroups: 16})
	require.NoError(t, err)
	require.Equal(t, uint32(256), tl.WG)
	// Each subgroup's queries take shared memory (4 rows of 256 fp32 values at d = 256: 4 KiB),
	// so 16 subgroups exceed 48 KiB and the workgroup takes the most that fit: 8.
	p.MaxWorkgroupInvocations, p.MaxWorkgroupSize[0], p.MaxSharedMemory = 1024, 1024, 48<<10
	tl, _, err = decodeTiles(devices.TierSubgroup, &p, 256, 4, 16, memory.F16, decodeTuning{subgroups: 16})
	require.NoError(t, err)
	require.Equal(t, uint32(4*256*4+decodeMergeShared), decodeShared(devices.TierSubgroup, tiles{SG: 32, WG: 32, BR: 4}, 256))
	require.Equal(t, 8*tl.SG, tl.WG)
	require.LessOrEqual(t, decodeShared(devices.TierSubgroup, tl, 256), p.MaxSharedMemory)
	// A device whose shared memory holds not even one subgroup's queries has no subgroup tier.
	p.MaxSharedMemory = 1 << 10
	_, _, err = decodeTiles(devices.TierSubgroup, &p, 256, 4, 16, memory.F16, decodeTuning{})
	require.ErrorContains(t, err, "shared memory")
}

// TestDecodeTuningEnv reads the subgroup tier's settings from the environment: defaults unset,
// the values set, and an error naming the setting for a malformed one.
func TestDecodeTuningEnv(t *testing.T) {
	for _, env := range []string{DecodeUnrollEnv, DecodeSubgroupsEnv, DecodeContiguousEnv, DecodePrefetchEnv, DecodeIMMAEnv} {
		t.Setenv(env, "")
	}
	tu, err := decodeTuningEnv()
	require.NoError(t, err)
	require.Equal(t, decodeTuning{subgroups: 1}, tu)
	require.Equal(t, uint32(decodeStreamUnroll16), tu.unrollFor(16))
	require.Equal(t, uint32(decodeStreamUnroll), tu.unrollFor(8))
	for bits, want := range map[uint32]bool{32: false, 16: false, 8: true, 4: true} {
		require.Equal(t, want, tu.prefetchFor(bits), "prefetch by default at %d bits", bits)
	}
	t.Setenv(DecodePrefetchEnv, "0")
	tu, err = decodeTuningEnv()
	require.NoError(t, err)
	require.False(t, tu.prefetchFor(4))
	t.Setenv(DecodeUnrollEnv, "3")
	t.Setenv(DecodeSubgroupsEnv, "8")
	t.Setenv(DecodeContiguousEnv, "1")
	t.Setenv(DecodePrefetchEnv, "1")
	t.Setenv(DecodeIMMAEnv, "1")
	tu, err = decodeTuningEnv()
	require.NoError(t, err)
	require.Equal(t, decodeTuning{unroll: 3, subgroups: 8, contiguous: true, prefetch: true, prefetchSet: true, imma: true}, tu)
	t.Setenv(DecodeIMMAEnv, "0")
	tu, err = decodeTuningEnv()
	require.NoError(t, err)
	require.False(t, tu.imma)
	require.True(t, tu.prefetchFor(16))
	require.Equal(t, uint32(3), tu.unrollFor(16))
	for env, bads := range map[string][]string{
		DecodeUnrollEnv:     {"0", "65", "x"},
		DecodeSubgroupsEnv:  {"0", "3", "32", "x"},
		DecodeContiguousEnv: {"2", "yes"},
		DecodePrefetchEnv:   {"2", "on"},
		DecodeIMMAEnv:       {"2", "off"},
	} {
		for _, bad := range bads {
			t.Setenv(env, bad)
			_, err := decodeTuningEnv()
			require.ErrorContains(t, err, env, bad)
		}
		t.Setenv(env, "")
	}
}

// The common decode shapes (one new token, 4 or 8 query heads per kv head) fit one workgroup's
// rows on every simulated device with 32 KiB of shared memory or more at the scalar tier for head
// dims up to 128, and at the subgroup tier 4 rows do wherever a lane reads one vector of each
// fp16 key (lanes keep o of 8 dims per row in registers, and read q's from shared memory; 8 rows take two workgroups, as
// decodeStreamValues says), so each K/V byte of a chunk is read once there; elsewhere fewer rows
// per workgroup (logged); at the coopmat tier 16 rows always do. The documented caps on rows per
// workgroup hold: 64 at the scalar and coopmat tiers, 4 at the subgroup tier.
func TestDecodeRowsOneWorkgroup(t *testing.T) {
	forSimulatedDecodeTiers(t, func(name string, p *devices.Profile, tier devices.Tier) {
		sg := p.SubgroupSize
		for _, d := range HeadDims {
			for _, rows := range []int{4, 8} {
				tl, l, err := decodeTiles(tier, p, d, rows, 16, memory.F16, decodeTuning{})
				require.NoError(t, err)
				if int(tl.BR) < rows {
					// Shared memory can leave fewer rows at large head dims: K and V
					// are then read once per row block.
					switch tier {
					case devices.TierScalar:
						require.True(t, d > 128 || p.MaxSharedMemory < 32<<10, "%s sg %d %s d %d: %d rows in %v", name, sg, tier, d, rows, tl)
					case devices.TierCoopMat:
						t.Fatalf("%s sg %d %s d %d: %d rows in %v", name, sg, tier, d, rows, tl)
					default:
						require.True(t, l.vpl > 1 || rows > 4, "%s sg %d %s d %d: %d rows in %v", name, sg, tier, d, rows, tl)
					}
					t.Logf("%s sg %d %s d %d: %d rows, %d per workgroup", name, sg, tier, d, rows, tl.BR)
				}
			}
		}
		tl, _, err := decodeTiles(tier, p, 64, 512, 16, memory.F16, decodeTuning{})
		require.NoError(t, err)
		switch tier {
		case devices.TierScalar, devices.TierCoopMat:
			require.LessOrEqual(t, tl.BR, uint32(64), name)
		default:
			require.LessOrEqual(t, tl.BR, uint32(4), name)
		}
	})
}

// K and V are read in multi-word loads only where the row's words and every stride and offset of
// K and V are whole loads: for fp16 values in 4-word loads, multiples of 8 values.
func TestStreamAligned(t *testing.T) {
	l := newStreamLayout(128, 16, 32) // vw 4, roww 64
	ok := kvPlacement{kTokenStride: 256, kHeadStride: 128, vTokenStride: 512, vHeadStride: 128, kOff: 8, vOff: 1 << 20}
	require.True(t, streamAligned(l, ok, 2))
	require.False(t, streamAligned(l, ok, 4), "four values a word: kOff 8 is half a load")
	for i, field := range placementFields {
		bad := ok
		*field(&bad) += 4
		require.False(t, streamAligned(l, bad, 2), "field %d: %+v", i, bad)
	}
	require.False(t, streamAligned(newStreamLayout(68, 16, 32), ok, 2), "rows of 34 words")
}

// placementFields are a kvPlacement's offsets and strides, one accessor each.
var placementFields = []func(*kvPlacement) *uint32{
	func(a *kvPlacement) *uint32 { return &a.kTokenStride },
	func(a *kvPlacement) *uint32 { return &a.kHeadStride },
	func(a *kvPlacement) *uint32 { return &a.vTokenStride },
	func(a *kvPlacement) *uint32 { return &a.vHeadStride },
	func(a *kvPlacement) *uint32 { return &a.kOff },
	func(a *kvPlacement) *uint32 { return &a.vOff },
}

// placementOf reads K's and V's token and head strides (the third and second dimensions from the
// last) and offsets, whatever their rank.
func TestPlacementOf(t *testing.T) {
	k := &memory.Tensor{Shape: []int{2, 5, 3, 8}, Strides: []int{1000, 40, 8, 1}, Offset: 16}
	v := &memory.Tensor{Shape: []int{10, 3, 8}, Strides: []int{48, 16, 1}, Offset: 24}
	require.Equal(t, kvPlacement{kTokenStride: 40, kHeadStride: 8, vTokenStride: 48, vHeadStride: 16, kOff: 16, vOff: 24}, placementOf(k, v))
}

// The automatic order puts the coopmat tier first only for calls of more rows than the subgroup
// tier was measured faster at (float and quantized K/V), and never for FP8 or scaled queries or
// paged K and V.
func TestDecodeOrder(t *testing.T) {
	stream := []devices.Tier{devices.TierSubgroup, devices.TierScalar}
	matrix := append([]devices.Tier{devices.TierCoopMat}, stream...)
	f16 := decodeKernel{op: shaders.OpDecode, dt: memory.F16}
	int8 := decodeKernel{op: shaders.OpDecodeInt8, dt: memory.F16}
	require.Equal(t, stream, decodeOrder(f16, 4, false))
	require.Equal(t, stream, decodeOrder(f16, 16, false))
	require.Equal(t, matrix, decodeOrder(f16, 17, false))
	require.Equal(t, stream, decodeOrder(f16, 64, true), "paged")
	require.Equal(t, stream, decodeOrder(int8, 4, false))
	require.Equal(t, matrix, decodeOrder(int8, 8, false))
	int8.wideQueries = "FP8Queries"
	require.Equal(t, stream, decodeOrder(int8, 64, false))
}

// With the coopmat tier first, a device without it (or an input type it does not take) gets the
// subgroup tier; one with it gets the coopmat kernel for fp16 and the subgroup kernel for fp32.
func TestDecodeOrderFallsBack(t *testing.T) {
	matrix := decodeOrder(decodeKernel{op: shaders.OpDecode, dt: memory.F16}, 64, false)
	for _, c := range []struct {
		device string
		dt     memory.DType
		tier   devices.Tier
	}{{"nvidia-h100", memory.F16, devices.TierCoopMat}, {"nvidia-h100", memory.F32, devices.TierSubgroup}, {"lavapipe", memory.F16, devices.TierSubgroup}} {
		p, err := devices.Simulated(c.device)
		require.NoError(t, err)
		v, _, _, err := selectDecode(&p, shaders.OpDecode, devices.TierAuto, matrix, c.dt, 128, 64, decodeTuning{}, false)
		require.NoError(t, err, c.device)
		require.Equal(t, c.tier, v.Tier, "%s %s", c.device, c.dt)
	}
}

// Decode's input types per tier on the simulated H100: every type at the scalar and subgroup
// tiers, fp16 and bf16 at the coopmat tier (fp16 only for quantized K/V); none at coopmat2.
func TestDecodeTierInputsH100(t *testing.T) {
	p, err := devices.Simulated("nvidia-h100")
	require.NoError(t, err)
	all := []memory.DType{memory.F32, memory.F16, memory.BF16}
	require.Equal(t, all, DecodeTierInputsOn(&p, devices.TierScalar))
	require.Equal(t, all, DecodeTierInputsOn(&p, devices.TierSubgroup))
	require.Equal(t, []memory.DType{memory.F16, memory.BF16}, DecodeTierInputsOn(&p, devices.TierCoopMat))
	require.Empty(t, DecodeTierInputsOn(&p, devices.TierCoopMat2))
	require.Equal(t, []memory.DType{memory.F16}, QuantizedDecodeInputs(devices.TierCoopMat))
	require.Equal(t, []devices.Tier{devices.TierScalar, devices.TierSubgroup, devices.TierCoopMat}, DecodeTiersOn(&p))
	require.Equal(t, []devices.Tier{devices.TierScalar, devices.TierSubgroup, devices.TierCoopMat}, DecodeOpTiersOn(&p, shaders.OpDecodeInt4))
	require.Nil(t, DecodeOpTiersOn(&p, shaders.OpForward))
	_, _, err = AutoDecode(&p, shaders.OpMerge, memory.F16, 128, 4)
	require.ErrorContains(t, err, "merge is not a decode operation")
	_, _, err = AutoDecode(&p, shaders.OpDecode, memory.F16, 300, 4)
	require.ErrorContains(t, err, "head dim 300")
	tier, kernel, err := AutoDecode(&p, shaders.OpDecodeInt8, memory.F16, 128, 64)
	require.NoError(t, err)
	require.Equal(t, [2]string{"coopmat", "decode_int8_coopmat"}, [2]string{tier.String(), kernel})
}

// TestDecodeSpecs: decode.comp's six constants, the kernel's own padded to decodeKernelSpecs, and
// then CONTIGUOUS and PREFETCH (ids 9 and 10, set at the subgroup tier only) and MERGE_LAST (11),
// as far as the last that is set: by default PREFETCH for INT8 and INT4 K/V at the subgroup
// tier, nothing else.
func TestDecodeSpecs(t *testing.T) {
	tl := tiles{BR: 4, BC: 8, WG: 32, SG: 32}
	for _, c := range []struct {
		op        shaders.Op
		dt        memory.DType
		tier      devices.Tier
		tu        decodeTuning
		mergeLast bool
		own       []uint32
		wantTail  []uint32 // after the first 6 + decodeKernelSpecs
	}{
		{shaders.OpDecode, memory.F16, devices.TierSubgroup, decodeTuning{}, false, nil, nil},
		{shaders.OpDecode, memory.F32, devices.TierSubgroup, decodeTuning{}, false, nil, nil},
		{shaders.OpDecodeInt8, memory.F32, devices.TierSubgroup, decodeTuning{}, false, []uint32{1, 128, 0}, []uint32{0, 1}},
		{shaders.OpDecodeInt4, memory.F32, devices.TierSubgroup, decodeTuning{}, false, []uint32{1, 128, 0}, []uint32{0, 1}},
		{shaders.OpDecodeInt4, memory.F32, devices.TierScalar, decodeTuning{}, false, []uint32{1, 128, 0}, nil},
		{shaders.OpDecodeInt8, memory.F32, devices.TierSubgroup, decodeTuning{prefetchSet: true}, false, []uint32{1, 128, 0}, nil},
		{shaders.OpDecode, memory.F16, devices.TierSubgroup, decodeTuning{prefetch: true, prefetchSet: true}, false, nil, []uint32{0, 1}},
		{shaders.OpDecode, memory.F16, devices.TierSubgroup, decodeTuning{contiguous: true}, false, nil, []uint32{1, 0}},
		{shaders.OpDecode, memory.F16, devices.TierScalar, decodeTuning{contiguous: true}, false, nil, nil},
		{shaders.OpDecode, memory.F16, devices.TierSubgroup, decodeTuning{mergeLast: true}, true, nil, []uint32{0, 0, 1}},
		{shaders.OpDecodeInt8, memory.F32, devices.TierSubgroup, decodeTuning{mergeLast: true}, true, []uint32{1, 128, 0}, []uint32{0, 1, 1}},
		{shaders.OpDecodeInt8, memory.F32, devices.TierScalar, decodeTuning{mergeLast: true, contiguous: true}, true, []uint32{1, 128, 0}, []uint32{0, 0, 1}},
		{shaders.OpDecode, memory.F16, devices.TierCoopMat, decodeTuning{mergeLast: true}, true, nil, []uint32{0, 0, 1}},
	} {
		variant, err := shaders.ForTier(c.op, c.tier)
		require.NoError(t, err)
		spec, err := decodeSpecs(variant, decodeKernel{op: c.op, dt: c.dt, spec: c.own}, memory.F16, 128, tl, c.tu, c.mergeLast)
		require.NoError(t, err)
		want := append([]uint32{dtypeCode(memory.F16), 128, tl.BR, tl.BC, tl.WG, tl.SG}, make([]uint32, decodeKernelSpecs)...)
		copy(want[6:], c.own)
		require.Equal(t, append(want, c.wantTail...), spec, "%s at %s, %+v", c.op, c.tier, c.tu)
	}
	variant, err := shaders.ForTier(shaders.OpDecode, devices.TierSubgroup)
	require.NoError(t, err)
	_, err = decodeSpecs(variant, decodeKernel{op: shaders.OpDecode, spec: make([]uint32, decodeKernelSpecs+1)}, memory.F16, 128, tl, decodeTuning{}, false)
	require.ErrorContains(t, err, "specialization constants")
}
