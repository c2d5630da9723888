package vk_test

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/vk"
)

// sparseDevice opens device 0 and skips (fails where a device is required) if it cannot back
// sparse-residency buffers.
func sparseDevice(t *testing.T) (*vk.Instance, *vk.Device) {
	in, d := openDevice(t)
	if err := d.SparseResidency(); err != nil {
		testenv.Lacks(t, err)
	}
	return in, d
}

func memoryType(t *testing.T, d *vk.Device, bits uint32, want vk.MemoryFlags) vk.MemoryType {
	t.Helper()
	for _, mt := range d.MemoryTypes() {
		if bits&(1<<mt.Index) != 0 && mt.Flags&want == want {
			return mt
		}
	}
	t.Fatalf("no memory type with flags %#x among bits %#x", want, bits)
	return vk.MemoryType{}
}

// TestSparseBind binds pages 0 and 2 of a 4-page sparse buffer, fills the buffer through the
// bound pages, reads them back, moves a page, unbinds and checks that validation stays clean.
func TestSparseBind(t *testing.T) {
	in, d := sparseDevice(t)
	info := d.Info()
	probe, err := d.NewSparseBuffer(1)
	require.NoError(t, err)
	_, page, _ := probe.Requirements()
	probe.Close()
	t.Logf("%s: sparse page %d bytes, sparseAddressSpaceSize %d, maxStorageBufferRange %d, residencyNonResidentStrict %v",
		info.Name, page, info.SparseAddressSpaceSize, info.MaxStorageBufferRange, d.NonResidentStrict())
	require.NotZero(t, page)

	sb, err := d.NewSparseBuffer(4 * page)
	require.NoError(t, err)
	defer sb.Close()
	require.True(t, sb.Sparse())
	size, align, bits := sb.Requirements()
	require.Equal(t, page, align)
	require.Equal(t, 4*page, size)
	require.Error(t, sb.Bind(nil, 0), "Bind on a sparse buffer")

	mem, err := d.Allocate(2*page, memoryType(t, d, bits, vk.MemoryDeviceLocal))
	require.NoError(t, err)
	defer mem.Close()
	require.NoError(t, d.BindSparse([]vk.SparseBind{
		{Buffer: sb, Offset: 0, Size: page, Memory: mem, MemoryOffset: page},
		{Buffer: sb, Offset: 2 * page, Size: page, Memory: mem, MemoryOffset: 0},
	}))

	host, err := d.NewBuffer(2 * page)
	require.NoError(t, err)
	defer host.Close()
	_, _, hbits := host.Requirements()
	hmem, err := d.Allocate(2*page, memoryType(t, d, hbits, vk.MemoryHostVisible|vk.MemoryHostCoherent))
	require.NoError(t, err)
	defer hmem.Close()
	require.NoError(t, host.Bind(hmem, 0))
	err = d.Run(context.Background(), func(c *vk.Commands) error {
		c.Fill(sb, 0, page, 0x11111111)
		c.Fill(sb, 2*page, page, 0x22222222)
		c.Barrier()
		c.Copy(sb, 0, host, 0, page)
		c.Copy(sb, 2*page, host, page, page)
		c.HostBarrier()
		return nil
	})
	require.NoError(t, err)
	got := hmem.Bytes(0, 2*page)
	for i := uint64(0); i < 2*page; i += 4 {
		want := uint32(0x11111111)
		if i >= page {
			want = 0x22222222
		}
		if v := binary.LittleEndian.Uint32(got[i:]); v != want {
			t.Fatalf("byte %d: %#x, want %#x", i, v, want)
		}
	}
	// The memory holds the data: its second page, moved from buffer page 0 to page 3, still
	// reads 0x11111111 there.
	require.NoError(t, d.BindSparse([]vk.SparseBind{{Buffer: sb, Offset: 0, Size: page},
		{Buffer: sb, Offset: 3 * page, Size: page, Memory: mem, MemoryOffset: page}}))
	err = d.Run(context.Background(), func(c *vk.Commands) error {
		c.Copy(sb, 3*page, host, 0, page)
		c.HostBarrier()
		return nil
	})
	require.NoError(t, err)
	for i := uint64(0); i < page; i += 4 {
		if v := binary.LittleEndian.Uint32(got[i:]); v != 0x11111111 {
			t.Fatalf("moved page, byte %d: %#x, want 0x11111111", i, v)
		}
	}

	require.NoError(t, d.BindSparse([]vk.SparseBind{{Buffer: sb, Offset: 0, Size: 4 * page}}), "unbind all")
	testenv.CheckValidation(t, in)
}

func TestSparseBindArguments(t *testing.T) {
	_, d := sparseDevice(t)
	sb, err := d.NewSparseBuffer(1)
	require.NoError(t, err)
	_, page, bits := sb.Requirements()
	sb.Close()
	sb, err = d.NewSparseBuffer(2 * page)
	require.NoError(t, err)
	defer sb.Close()
	mem, err := d.Allocate(page, memoryType(t, d, bits, vk.MemoryDeviceLocal))
	require.NoError(t, err)
	defer mem.Close()
	plain, err := d.NewBuffer(page)
	require.NoError(t, err)
	defer plain.Close()
	for name, b := range map[string]vk.SparseBind{
		"not sparse":       {Buffer: plain, Size: page, Memory: mem},
		"past the end":     {Buffer: sb, Offset: 2 * page, Size: page, Memory: mem},
		"unaligned offset": {Buffer: sb, Offset: 4, Size: page, Memory: mem},
		"unaligned size":   {Buffer: sb, Offset: 0, Size: page / 2, Memory: mem},
		"past the memory":  {Buffer: sb, Offset: 0, Size: 2 * page, Memory: mem},
		"zero size":        {Buffer: sb, Memory: mem},
	} {
		require.Error(t, d.BindSparse([]vk.SparseBind{b}), name)
	}
	_, err = d.NewSparseBuffer(0)
	require.Error(t, err)
	if max := d.Info().SparseAddressSpaceSize; max > 0 && max < 1<<62 {
		_, err = d.NewSparseBuffer(max + 1)
		require.True(t, errors.Is(err, vk.ErrOutOfDeviceMemory), "%v", err)
	}
}
