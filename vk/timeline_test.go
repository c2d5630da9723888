package vk_test

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/vk"
)

// timelineDevice opens device 0 and skips (fails where a device is required) without timeline
// semaphores.
func timelineDevice(t *testing.T) (*vk.Instance, *vk.Device) {
	in, d := openDevice(t)
	if err := d.TimelineSemaphores(); err != nil {
		testenv.Lacks(t, err)
	}
	return in, d
}

// hostBuffer is a host-visible, coherent buffer of size bytes and its memory.
func hostBuffer(t *testing.T, d *vk.Device, size uint64) (*vk.Buffer, *vk.Memory) {
	t.Helper()
	b, err := d.NewBuffer(size)
	require.NoError(t, err)
	_, _, bits := b.Requirements()
	mem, err := d.Allocate(size, memoryType(t, d, bits, vk.MemoryHostVisible|vk.MemoryHostCoherent))
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(); mem.Close() })
	require.NoError(t, b.Bind(mem, 0))
	return b, mem
}

func words(t *testing.T, mem *vk.Memory, n uint64) []uint32 {
	t.Helper()
	b := mem.Bytes(0, 4*n)
	out := make([]uint32, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint32(b[4*i:])
	}
	return out
}

// TestTimelineHost signals and waits from the host.
func TestTimelineHost(t *testing.T) {
	in, d := timelineDevice(t)
	tl, err := d.NewTimeline(2)
	require.NoError(t, err)
	defer tl.Close()
	v, err := tl.Value()
	require.NoError(t, err)
	require.Equal(t, uint64(2), v)
	require.NoError(t, tl.Wait(context.Background(), 1), "a reached value")
	require.NoError(t, tl.Signal(7))
	v, err = tl.Value()
	require.NoError(t, err)
	require.Equal(t, uint64(7), v)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, tl.Wait(ctx, 8), context.DeadlineExceeded)
	tl.Close()
	tl.Close()
	_, err = tl.Value()
	require.ErrorIs(t, err, vk.ErrClosed)
	testenv.CheckValidation(t, in)
}

// TestTimelineOrdersSubmission submits work that waits for a value not yet signalled: it does
// not run until the host signals it, then completes.
func TestTimelineOrdersSubmission(t *testing.T) {
	in, d := timelineDevice(t)
	tl, err := d.NewTimeline(0)
	require.NoError(t, err)
	defer tl.Close()
	buf, mem := hostBuffer(t, d, 256)
	done := make(chan error, 1)
	go func() {
		done <- d.Run(context.Background(), func(c *vk.Commands) error {
			c.After(vk.TimelinePoint{Timeline: tl, Value: 3}, vk.TimelinePoint{Timeline: tl, Value: 1})
			c.Fill(buf, 0, 256, 0xabcdef01)
			c.HostBarrier()
			return nil
		})
	}()
	require.NoError(t, tl.Signal(2))
	select {
	case err := <-done:
		t.Fatalf("the submission finished before its wait was signalled: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	require.Equal(t, uint32(0), words(t, mem, 1)[0], "nothing ran yet")
	require.NoError(t, tl.Signal(3))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the submission did not finish once its wait was signalled")
	}
	for i, w := range words(t, mem, 64) {
		require.Equal(t, uint32(0xabcdef01), w, "word %d", i)
	}
	testenv.CheckValidation(t, in)
}

// TestSubmitBinds binds pages without waiting, chains the batches on one timeline and orders
// the work that uses the pages after them: a batch waiting for a value the host has not signalled
// yet signals only after it, and so does the work waiting for that batch. The binds of lavapipe
// are synchronous, so this checks the values and the waits, not a race a missing wait would lose.
func TestSubmitBinds(t *testing.T) {
	in, d := sparseDevice(t)
	if err := d.TimelineSemaphores(); err != nil {
		testenv.Lacks(t, err)
	}
	family, separate := d.BindQueue()
	t.Logf("binds on queue family %d, separate from the compute queue: %v", family, separate)
	require.GreaterOrEqual(t, family, 0)
	tl, err := d.NewTimeline(0)
	require.NoError(t, err)
	defer tl.Close()
	probe, err := d.NewSparseBuffer(1)
	require.NoError(t, err)
	_, page, bits := probe.Requirements()
	probe.Close()
	sb, err := d.NewSparseBuffer(2 * page)
	require.NoError(t, err)
	defer sb.Close()
	mem, err := d.Allocate(2*page, memoryType(t, d, bits, vk.MemoryDeviceLocal))
	require.NoError(t, err)
	defer mem.Close()
	host, hmem := hostBuffer(t, d, 2*page)
	ctx := context.Background()
	point := func(v uint64) vk.TimelinePoint { return vk.TimelinePoint{Timeline: tl, Value: v} }
	value := func() uint64 {
		v, err := tl.Value()
		require.NoError(t, err)
		return v
	}

	// Batch 1 binds page 0; the fill waits for it.
	require.NoError(t, d.SubmitBinds([]vk.SparseBind{{Buffer: sb, Size: page, Memory: mem}}, nil, point(1)))
	require.NoError(t, d.Run(ctx, func(c *vk.Commands) error {
		c.After(point(1))
		c.Fill(sb, 0, page, 0x5a5a5a5a)
		return nil
	}))
	require.Equal(t, uint64(1), value())

	// Batch 3 binds page 1 after the host's value 2; a copy of both pages waits for batch 3.
	require.NoError(t, d.SubmitBinds([]vk.SparseBind{{Buffer: sb, Offset: page, Size: page, Memory: mem, MemoryOffset: page}},
		[]vk.TimelinePoint{point(1), point(2)}, point(3)))
	done := make(chan error, 1)
	go func() {
		done <- d.Run(ctx, func(c *vk.Commands) error {
			c.After(point(3))
			c.Fill(sb, page, page, 0x33333333)
			c.Barrier()
			c.Copy(sb, 0, host, 0, 2*page)
			c.HostBarrier()
			return nil
		})
	}()
	select {
	case err := <-done:
		t.Fatalf("the copy finished before the binds it waits for: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	require.Equal(t, uint64(1), value(), "batch 3 waits for value 2")
	require.NoError(t, tl.Signal(2))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the copy did not finish once its binds were done")
	}
	require.Equal(t, uint64(3), value())
	w := words(t, hmem, 2*page/4)
	for i, x := range w {
		want := uint32(0x5a5a5a5a)
		if uint64(i) >= page/4 {
			want = 0x33333333
		}
		if x != want {
			t.Fatalf("word %d: %#x, want %#x", i, x, want)
		}
	}

	// Unbind everything without binds in between: an empty batch only signals.
	require.NoError(t, d.SubmitBinds(nil, []vk.TimelinePoint{point(3)}, point(4)))
	require.NoError(t, d.SubmitBinds([]vk.SparseBind{{Buffer: sb, Size: 2 * page}}, []vk.TimelinePoint{point(4)}, point(5)))
	require.NoError(t, tl.Wait(ctx, 5))

	// Arguments.
	other, err := d.NewTimeline(0)
	require.NoError(t, err)
	other.Close()
	require.Error(t, d.SubmitBinds(nil, nil, vk.TimelinePoint{}), "no signal")
	require.Error(t, d.SubmitBinds(nil, []vk.TimelinePoint{{Timeline: other, Value: 1}}, point(6)), "a closed timeline")
	err = d.Run(ctx, func(c *vk.Commands) error {
		c.After(vk.TimelinePoint{Timeline: other, Value: 1})
		return nil
	})
	require.ErrorContains(t, err, "not a live timeline")
	require.Equal(t, uint64(5), value(), "nothing submitted")
	testenv.CheckValidation(t, in)
}

// TestSharedBindQueue opens the device with binds on the compute queue: they still work.
func TestSharedBindQueue(t *testing.T) {
	in := testenv.Instance(t)
	d := openDeviceWith(t, in, vk.DeviceOptions{SharedBindQueue: true})
	defer d.Close()
	if err := d.SparseResidency(); err != nil {
		testenv.Lacks(t, err)
	}
	_, separate := d.BindQueue()
	require.False(t, separate)
	probe, err := d.NewSparseBuffer(1)
	require.NoError(t, err)
	_, page, bits := probe.Requirements()
	probe.Close()
	sb, err := d.NewSparseBuffer(page)
	require.NoError(t, err)
	defer sb.Close()
	mem, err := d.Allocate(page, memoryType(t, d, bits, vk.MemoryDeviceLocal))
	require.NoError(t, err)
	defer mem.Close()
	require.NoError(t, d.BindSparse([]vk.SparseBind{{Buffer: sb, Size: page, Memory: mem}}))
	require.NoError(t, d.BindSparse([]vk.SparseBind{{Buffer: sb, Size: page}}))
	if err := d.TimelineSemaphores(); err != nil && !errors.Is(err, vk.ErrFeatureMissing) {
		t.Fatal(err)
	}
	testenv.CheckValidation(t, in)
}
