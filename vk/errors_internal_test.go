package vk

import (
	"errors"
	"strings"
	"testing"

	vk "github.com/goki/vulkan"
	"github.com/stretchr/testify/require"
)

// TestResultMapping checks each VkResult that has a sentinel maps to it (and to no other), that
// success is nil, and that the other codes give an error naming the call and the code.
func TestResultMapping(t *testing.T) {
	sentinels := []error{ErrNoVulkan, ErrNoDevice, ErrDeviceLost, ErrOutOfDeviceMemory, ErrOutOfHostMemory,
		ErrExtensionMissing, ErrFeatureMissing, ErrLayerMissing, ErrInitialization, ErrIncompatibleDriver,
		ErrTimeout, ErrClosed, ErrValidation}
	for _, tc := range []struct {
		r    vk.Result
		want error // nil: no sentinel
		text string
	}{
		{vk.ErrorDeviceLost, ErrDeviceLost, "device lost"},
		{vk.ErrorOutOfDeviceMemory, ErrOutOfDeviceMemory, "out of device memory"},
		{vk.ErrorOutOfHostMemory, ErrOutOfHostMemory, "out of host memory"},
		{vk.ErrorExtensionNotPresent, ErrExtensionMissing, "extension not present"},
		{vk.ErrorFeatureNotPresent, ErrFeatureMissing, "feature not present"},
		{vk.ErrorLayerNotPresent, ErrLayerMissing, "layer not present"},
		{vk.ErrorInitializationFailed, ErrInitialization, "initialization failed"},
		{vk.ErrorIncompatibleDriver, ErrIncompatibleDriver, "incompatible driver"},
		{vk.Timeout, ErrTimeout, "timeout"},
		{vk.NotReady, nil, "VK_NOT_READY (VkResult 1)"},
		{vk.Incomplete, nil, "VK_INCOMPLETE (VkResult 5)"},
		{vk.ErrorMemoryMapFailed, nil, "VK_ERROR_MEMORY_MAP_FAILED (VkResult -5)"},
		{vk.ErrorTooManyObjects, nil, "VK_ERROR_TOO_MANY_OBJECTS (VkResult -10)"},
		{vk.ErrorFormatNotSupported, nil, "VK_ERROR_FORMAT_NOT_SUPPORTED (VkResult -11)"},
		{vk.ErrorFragmentedPool, nil, "VK_ERROR_FRAGMENTED_POOL (VkResult -12)"},
		{vk.ErrorUnknown, nil, "VK_ERROR_UNKNOWN (VkResult -13)"},
		{vk.ErrorOutOfPoolMemory, nil, "VK_ERROR_OUT_OF_POOL_MEMORY (VkResult -1000069000)"},
		{vk.ErrorFragmentation, nil, "VK_ERROR_FRAGMENTATION (VkResult -1000161000)"},
		{vk.PipelineCompileRequired, nil, "VK_PIPELINE_COMPILE_REQUIRED (VkResult 1000297000)"},
		{vk.Result(-123456), nil, "unknown VkResult -123456"},
		{vk.Result(77), nil, "unknown VkResult 77"},
	} {
		err := result("vkTestCall", tc.r)
		if err == nil {
			t.Errorf("VkResult %d: nil error", int32(tc.r))
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, "vkTestCall") || !strings.Contains(msg, tc.text) {
			t.Errorf("VkResult %d: error %q should name vkTestCall and %q", int32(tc.r), msg, tc.text)
		}
		for _, s := range sentinels {
			if got := errors.Is(err, s); got != (s == tc.want) {
				t.Errorf("VkResult %d: errors.Is(%q, %q) = %v", int32(tc.r), msg, s, got)
			}
		}
	}
	if err := result("vkTestCall", vk.Success); err != nil {
		t.Errorf("VK_SUCCESS: %v", err)
	}
}

// enumerate asks for the count, fills that many structures with their sType set, accepts
// VK_INCOMPLETE on the second call, and turns other failures into errors naming the call.
func TestEnumerate(t *testing.T) {
	got, err := enumerateProbe(3, vk.Success, vk.Success)
	require.NoError(t, err)
	require.Equal(t, []uint32{77, 77, 77}, got)
	got, err = enumerateProbe(0, vk.Success, vk.Success)
	require.NoError(t, err)
	require.Empty(t, got)
	got, err = enumerateProbe(2, vk.Success, vk.Incomplete)
	require.NoError(t, err)
	require.Len(t, got, 2)
	_, err = enumerateProbe(2, vk.ErrorOutOfHostMemory, vk.Success)
	require.ErrorIs(t, err, ErrOutOfHostMemory)
	require.ErrorContains(t, err, "vkFake")
	_, err = enumerateProbe(2, vk.Success, vk.ErrorDeviceLost)
	require.ErrorIs(t, err, ErrDeviceLost)
}
