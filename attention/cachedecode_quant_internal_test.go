package attention

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/memory"
	"github.com/vkattn/vkattn/vk"
)

// batchGroups are the groups memory.KVCache.Batch gives for seqs of a cache whose buffers hold
// per sequences of region tokens each, lens[s] the length of sequence s: one KVGroup per buffer,
// in buffer order, its K a distinct tensor per buffer, each with one bind point of its own.
func batchGroups(seqs []int, per, region int, lens map[int]int) []memory.KVGroup {
	byBuffer := map[int]*memory.KVGroup{}
	last := 0
	for i, s := range seqs {
		b := s / per
		g := byBuffer[b]
		if g == nil {
			g = &memory.KVGroup{K: &memory.Tensor{}, V: &memory.Tensor{}, After: []vk.TimelinePoint{{Value: uint64(100*per + b)}}}
			byBuffer[b] = g
		}
		g.Index, g.Starts, g.Lens = append(g.Index, i), append(g.Starts, s%per*region), append(g.Lens, lens[s])
		last = max(last, b)
	}
	var out []memory.KVGroup
	for b := 0; b <= last; b++ {
		if g := byBuffer[b]; g != nil {
			out = append(out, *g)
		}
	}
	return out
}

// TestPairGroups: the codes' groups of a batch are split where their sequences' scales lie in
// different buffers of the scales' cache (3 sequences a buffer of codes, 5 of scales: the codes'
// second buffer straddles two of the scales'), each part with the codes' views, starts and
// lengths, the scales' views and starts, and both groups' binds; lengths that differ between the
// two caches are an error naming the sequence. A dispatch's table gets the scales' starts after
// its words, their place at the kernel's word seqScaleStarts.
func TestPairGroups(t *testing.T) {
	seqs := []int{7, 0, 3, 5, 4, 9}
	lens := map[int]int{7: 70, 0: 1, 3: 30, 5: 50, 4: 40, 9: 90}
	codes := batchGroups(seqs, 3, 1000, lens)
	scales := batchGroups(seqs, 5, 64, lens)
	require.Len(t, codes, 4) // buffers 0 (0), 1 (3, 5, 4), 2 (7), 3 (9)
	require.Len(t, scales, 2)
	groups, sg, err := pairGroups(codes, scales, seqs)
	require.NoError(t, err)
	require.Len(t, groups, 5)
	require.Len(t, sg, 5)
	want := []struct {
		codes, scales int   // the groups they come from
		index, starts []int // places in seqs; codes' starts
		lens, sstarts []int
	}{
		{0, 0, []int{1}, []int{0}, []int{1}, []int{0}},
		{1, 0, []int{2, 4}, []int{0, 1000}, []int{30, 40}, []int{192, 256}},
		{1, 1, []int{3}, []int{2000}, []int{50}, []int{0}},
		{2, 1, []int{0}, []int{1000}, []int{70}, []int{128}},
		{3, 1, []int{5}, []int{0}, []int{90}, []int{256}},
	}
	for i, w := range want {
		g := groups[i]
		require.Same(t, codes[w.codes].K, g.K, "pair %d", i)
		require.Same(t, codes[w.codes].V, g.V, "pair %d", i)
		require.Equal(t, w.index, g.Index, "pair %d", i)
		require.Equal(t, w.starts, g.Starts, "pair %d", i)
		require.Equal(t, w.lens, g.Lens, "pair %d", i)
		require.ElementsMatch(t, append(codes[w.codes].After, scales[w.scales].After...), g.After, "pair %d", i)
		require.Same(t, scales[w.scales].K, sg[i].k, "pair %d", i)
		require.Same(t, scales[w.scales].V, sg[i].v, "pair %d", i)
		require.Equal(t, w.sstarts, sg[i].starts, "pair %d", i)
	}

	// The table of pair 1: two sequences, the chunk size and the kernel's words after 2(m+1).
	words := make([]uint32, 2*3+1+seqQuantWords+4*2)
	table := sg[1].table(words, 2)
	require.Equal(t, uint32(len(words)), table[2*3+1+seqScaleStarts])
	require.Equal(t, []uint32{192, 256}, table[len(words):])

	lens[5] = 49
	_, _, err = pairGroups(codes, batchGroups(seqs, 5, 64, lens), seqs)
	require.ErrorContains(t, err, "attention: quantized kv cache: sequence 5 holds 50 tokens of codes and 49 of scales")
}
