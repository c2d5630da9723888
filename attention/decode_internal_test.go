package attention

import (
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/devices"
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

	// The H100 decode shape (B=8, Hk=8, one row block): 16 chunks at 128k keys and at 4k keys.
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
	require.Equal(t, 2*runtime.NumCPU(), DecodeTargetWorkgroups(&p))
	p.Type = vk.DeviceIntegrated
	require.Equal(t, 256, DecodeTargetWorkgroups(&p))
	p.Type = vk.DeviceDiscrete
	require.Equal(t, 1024, DecodeTargetWorkgroups(&p))
}

// Decode tiles fit each simulated device's shared memory and workgroup limits at every subgroup
// width it may run, for every head dim and any rows; rows that fit are all in one workgroup.
func TestDecodeTilesFitSimulatedDevices(t *testing.T) {
	for _, name := range devices.SimulatedNames() {
		p, err := devices.Simulated(name)
		require.NoError(t, err)
		for _, sg := range []uint32{4, 8, 16, 32, 64} {
			if sg < p.MinSubgroupSize || sg > p.MaxSubgroupSize {
				continue
			}
			p.SubgroupSize = sg
			for _, tier := range []devices.Tier{devices.TierScalar, devices.TierSubgroup} {
				if !p.Supports(tier) {
					continue
				}
				for _, d := range HeadDims {
					for _, rows := range []int{1, 3, 4, 8, 20, 32, 64, 128, 512} {
						tl, err := decodeTiles(tier, &p, d, rows)
						what := []any{name, sg, tier, d, rows, tl}
						require.NoError(t, err, what...)
						require.LessOrEqual(t, decodeShared(tier, tl, uint32(d)), p.MaxSharedMemory, what...)
						require.LessOrEqual(t, tl.WG, min(p.MaxWorkgroupInvocations, p.MaxWorkgroupSize[0]), what...)
						require.Positive(t, tl.BC, what...)
						require.LessOrEqual(t, tl.BR, pow2Ceil(uint32(rows)), "no workgroup larger than the rows need: %v", what)
						if tier == devices.TierScalar {
							require.Equal(t, tl.BR, tl.WG, what...)
							continue
						}
						require.Zero(t, tl.WG%tl.SG, what...)
						require.Zero(t, tl.BR%(tl.WG/tl.SG), "whole rows per subgroup: %v", what)
					}
				}
			}
			// The H100 decode shape (GQA 4, one new token): one workgroup per (chunk, kv head).
			if name == "nvidia-h100" && sg == 32 {
				tl, err := decodeTiles(devices.TierSubgroup, &p, 128, 4)
				require.NoError(t, err)
				require.GreaterOrEqual(t, tl.BR, uint32(4))
			}
		}
	}
}

// The common decode shapes (one new token, 4 or 8 query heads per kv head) fit one workgroup's
// rows on every simulated device with 32 KiB of shared memory or more, at the scalar tier and
// subgroup widths up to 32, for head dims up to 128, so each K/V byte of a chunk is read once there; larger head dims and wider
// subgroups may get fewer rows per workgroup when shared memory is short (logged); and the documented caps on rows per workgroup
// hold: 64 at the scalar tier, 32 at subgroup width 32.
func TestDecodeRowsOneWorkgroup(t *testing.T) {
	for _, name := range devices.SimulatedNames() {
		p, err := devices.Simulated(name)
		require.NoError(t, err)
		for _, sg := range []uint32{4, 8, 16, 32, 64} {
			if sg < p.MinSubgroupSize || sg > p.MaxSubgroupSize {
				continue
			}
			p.SubgroupSize = sg
			for _, tier := range []devices.Tier{devices.TierScalar, devices.TierSubgroup} {
				if !p.Supports(tier) {
					continue
				}
				for _, d := range HeadDims {
					for _, rows := range []int{4, 8} {
						tl, err := decodeTiles(tier, &p, d, rows)
						require.NoError(t, err)
						if int(tl.BR) < rows {
							// Shared memory can leave fewer rows at large head dims: K and V
							// are then read once per row block.
							require.True(t, d > 128 || p.MaxSharedMemory < 32<<10 || tier == devices.TierSubgroup && sg > 32, "%s sg %d %s d %d: %d rows in %v", name, sg, tier, d, rows, tl)
							t.Logf("%s sg %d %s d %d: %d rows, %d per workgroup", name, sg, tier, d, rows, tl.BR)
						}
					}
				}
				tl, err := decodeTiles(tier, &p, 64, 512)
				require.NoError(t, err)
				if tier == devices.TierScalar {
					require.LessOrEqual(t, tl.BR, uint32(64), name)
				} else if sg == 32 {
					require.LessOrEqual(t, tl.BR, uint32(32), name)
				}
			}
		}
	}
}
