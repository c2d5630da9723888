package vk_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vkattn/vkattn/internal/testenv"
	"github.com/vkattn/vkattn/vk"
)

func openDevice(t *testing.T) (*vk.Instance, *vk.Device) {
	in := testenv.Instance(t)
	infos, err := in.PhysicalDevices()
	require.NoError(t, err)
	if len(infos) == 0 {
		testenv.NoDevice(t, vk.ErrNoDevice)
	}
	d, err := in.OpenDevice(0, vk.DeviceOptions{})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	return in, d
}

func TestDeviceInfo(t *testing.T) {
	_, d := openDevice(t)
	info := d.Info()
	t.Logf("%s (%s) api %s driver %s, subgroup %d [%d,%d], shared %d, coopmat %d shapes",
		info.Name, info.Type, vk.Version(info.APIVersion), info.DriverName, info.SubgroupSize,
		info.MinSubgroupSize, info.MaxSubgroupSize, info.MaxSharedMemory, len(info.CoopMatShapes))
	require.NotEmpty(t, info.Name)
	require.NotZero(t, info.SubgroupSize)
	require.NotZero(t, info.MaxSharedMemory)
	require.NotZero(t, info.MaxMemoryAllocationSize)
	require.NotEmpty(t, info.Heaps)
}

func TestFillAndCopy(t *testing.T) {
	in, d := openDevice(t)
	var host vk.MemoryType
	found := false
	for _, mt := range d.MemoryTypes() {
		if mt.Flags&(vk.MemoryHostVisible|vk.MemoryHostCoherent) == vk.MemoryHostVisible|vk.MemoryHostCoherent {
			host, found = mt, true
			break
		}
	}
	require.True(t, found)
	a, err := d.NewBuffer(1024)
	require.NoError(t, err)
	defer a.Close()
	b, err := d.NewBuffer(1024)
	require.NoError(t, err)
	defer b.Close()
	m, err := d.Allocate(4096, host)
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, a.Bind(m, 0))
	require.NoError(t, b.Bind(m, 2048))
	err = d.Run(context.Background(), func(c *vk.Commands) error {
		c.Fill(a, 0, 1024, 0xdeadbeef)
		c.Barrier()
		c.Copy(a, 0, b, 0, 1024)
		c.HostBarrier()
		return nil
	})
	require.NoError(t, err)
	got := m.Bytes(2048, 8)
	require.Equal(t, []byte{0xef, 0xbe, 0xad, 0xde, 0xef, 0xbe, 0xad, 0xde}, got)
	testenv.CheckValidation(t, in)
}

// TestValidationReportsErrors proves the messenger route works: a fill whose size is not a
// multiple of 4 is invalid usage, and CheckValidation must report it.
func TestValidationReportsErrors(t *testing.T) {
	if !testenv.Validation() {
		t.Skip("validation layer not installed")
	}
	in, err := vk.NewInstance(vk.InstanceOptions{Validation: true})
	if err != nil {
		testenv.NoDevice(t, err)
	}
	defer in.Close()
	d, err := in.OpenDevice(0, vk.DeviceOptions{})
	require.NoError(t, err)
	defer d.Close()
	b, err := d.NewBuffer(64)
	require.NoError(t, err)
	defer b.Close()
	_, _, bits := b.Requirements()
	var typ vk.MemoryType
	for _, mt := range d.MemoryTypes() {
		if bits&(1<<mt.Index) != 0 {
			typ = mt
			break
		}
	}
	m, err := d.Allocate(4096, typ)
	require.NoError(t, err)
	defer m.Close()
	require.NoError(t, b.Bind(m, 0))
	require.NoError(t, in.CheckValidation())
	_ = d.Run(context.Background(), func(c *vk.Commands) error {
		c.Fill(b, 0, 3, 0) // VUID-vkCmdFillBuffer-size-00028
		return nil
	})
	require.ErrorIs(t, in.CheckValidation(), vk.ErrValidation)
}
