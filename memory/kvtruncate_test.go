package memory

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestKVCacheUnpairedTruncate checks an Unpaired bf16 cache of odd head dim (one value per token
// and head, as attention.QuantizedKVCache's Int8 scales) and Truncate: appends of odd sizes read
// back exactly; truncating drops the tokens, unbinds the pages past the kept ones, closes the
// views made before, and later appends continue from the kept tokens; bad calls change nothing.
// It runs on both layouts.
func TestKVCacheUnpairedTruncate(t *testing.T) {
	for _, paged := range []bool{false, true} {
		name := "sparse"
		if paged {
			name = "paged"
		}
		t.Run(name, func(t *testing.T) {
			testPaged = paged
			defer func() { testPaged = false }()
			a := newTestAllocator(t)
			cfg := KVCacheConfig{Sequences: 2, MaxLen: 200, Heads: 3, HeadDim: 1, DType: BF16}
			_, err := NewKVCache(a, cfg)
			require.ErrorContains(t, err, "HeadDim must be even for bf16")
			cfg.Unpaired = true
			c := newTestCache(t, a, withPages(t, a, cfg, 4))
			ctx := context.Background()
			r := rand.New(rand.NewPCG(3, 4))
			var k, v [2][]float32
			big := 2 * int(c.page/c.tokenBytes) // two pages' worth, so that truncating unbinds pages
			for i, n := range []int{1, 3, 5, 2, 7, 1, 40, 9, big} {
				s := i % 2
				nk, nv := randomValues(r, 3*n), randomValues(r, 3*n)
				require.NoError(t, c.Append(ctx, s, nk, nv))
				k[s], v[s] = append(k[s], nk...), append(v[s], nv...)
			}
			checkSequences(t, c, k[:], v[:])
			checkCommitted(t, c)

			kv, _, err := c.View(0)
			require.NoError(t, err)
			n := c.Len(0)
			require.NoError(t, c.Truncate(0, n), "to its length: nothing")
			require.False(t, kv.Closed())
			for _, bad := range []int{-1, n + 1} {
				require.ErrorContains(t, c.Truncate(0, bad), "truncate sequence 0")
			}
			require.ErrorContains(t, c.Truncate(2, 0), "sequence 2 out of range")
			before := c.Stats().SeqPages[0]
			require.NoError(t, c.Truncate(0, 4))
			require.True(t, kv.Closed(), "views made before a truncation are closed")
			require.Equal(t, 4, c.Len(0))
			require.Equal(t, c.pagesFor(4)*2, c.Stats().SeqPages[0])
			require.Greater(t, before, c.Stats().SeqPages[0], "pages unbound")
			k[0], v[0] = k[0][:12], v[0][:12]
			nk, nv := randomValues(r, 3*11), randomValues(r, 3*11)
			require.NoError(t, c.Append(ctx, 0, nk, nv))
			k[0], v[0] = append(k[0], nk...), append(v[0], nv...)
			checkSequences(t, c, k[:], v[:])
			checkCommitted(t, c)
			require.NoError(t, c.Truncate(1, 0))
			require.Equal(t, 0, c.Stats().SeqPages[1])
			k[1], v[1] = nil, nil
			checkSequences(t, c, k[:], v[:])
		})
	}
}
