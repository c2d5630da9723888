package vk_test

import (
	"context"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/vk"
)

// TestCallsBesideGC makes descriptor sets and records copies and barriers while another
// goroutine collects garbage without pause: the arrays of structures these calls hand to the
// driver and the validation layer must stay alive until the calls return, whatever the collector
// does meanwhile. (Through the binding, whose finalizers free its C copies of them, it crashed in
// vkUpdateDescriptorSets and in lavapipe's queue thread within a few runs.)
func TestCallsBesideGC(t *testing.T) {
	in, d := openDevice(t)
	const bindings = 8
	p, err := d.NewPipeline(vk.PipelineSpec{Name: "empty", SPIRV: emptyCompute(), Bindings: bindings})
	require.NoError(t, err)
	defer p.Close()
	var bufs [bindings]*vk.Buffer
	for i := range bufs {
		bufs[i], err = d.NewBuffer(256)
		require.NoError(t, err)
		defer bufs[i].Close()
	}
	var host vk.MemoryType
	for _, mt := range d.MemoryTypes() {
		if mt.Flags&vk.MemoryHostVisible != 0 {
			host = mt
			break
		}
	}
	m, err := d.Allocate(256*bindings, host)
	require.NoError(t, err)
	defer m.Close()
	for i, b := range bufs {
		require.NoError(t, b.Bind(m, uint64(256*i)))
	}
	ranges := make([]vk.BufferRange, bindings)
	for i, b := range bufs {
		ranges[i] = vk.BufferRange{Buffer: b, Offset: 0, Size: 256}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for range 20000 {
		set, err := p.NewDescriptorSet(ranges...)
		require.NoError(t, err)
		set.Close()
	}
	for range 20 {
		require.NoError(t, d.Run(context.Background(), func(c *vk.Commands) error {
			for i := range 2000 {
				c.Copy(bufs[i%bindings], 0, bufs[(i+1)%bindings], 0, 256)
				c.Barrier()
			}
			c.HostBarrier()
			return nil
		}))
	}
	testenv.CheckValidation(t, in)
}

// TestStartupBesideGC lists layers and devices (with their extensions and queue families) and
// opens devices while another goroutine collects garbage without pause: the arrays the driver
// fills must stay alive until the calls return, and every listing must read the same. (Through
// the binding, whose finalizers free its C arrays for these listings, the driver wrote layer
// names into freed memory and the process died in malloc or free within a few runs.)
func TestStartupBesideGC(t *testing.T) {
	in := testenv.Instance(t)
	layer := vk.LayerAvailable(vk.ValidationLayer)
	first, err := in.PhysicalDevices()
	require.NoError(t, err)
	if len(first) == 0 {
		testenv.NoDevice(t, vk.ErrNoDevice)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for range 300 {
		require.Equal(t, layer, vk.LayerAvailable(vk.ValidationLayer))
		infos, err := in.PhysicalDevices()
		require.NoError(t, err)
		require.Len(t, infos, len(first))
		for i := range infos {
			require.Equal(t, first[i].Extensions, infos[i].Extensions)
			require.Equal(t, first[i].ComputeFamily, infos[i].ComputeFamily)
			require.Equal(t, first[i].TimestampBits, infos[i].TimestampBits)
		}
	}
	for range 50 {
		d, err := in.OpenDevice(0, vk.DeviceOptions{})
		require.NoError(t, err)
		d.Close()
	}
	testenv.CheckValidation(t, in)
}
