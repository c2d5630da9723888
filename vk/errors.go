package vk

import (
	"errors"
	"fmt"

	vk "github.com/goki/vulkan"
)

// Errors that callers may want to test for with errors.Is.
var (
	ErrNoVulkan           = errors.New("vk: Vulkan is not available")
	ErrNoDevice           = errors.New("vk: no Vulkan device")
	ErrDeviceLost         = errors.New("vk: device lost")
	ErrOutOfDeviceMemory  = errors.New("vk: out of device memory")
	ErrOutOfHostMemory    = errors.New("vk: out of host memory")
	ErrExtensionMissing   = errors.New("vk: extension not present")
	ErrFeatureMissing     = errors.New("vk: feature not present")
	ErrLayerMissing       = errors.New("vk: layer not present")
	ErrInitialization     = errors.New("vk: initialization failed")
	ErrIncompatibleDriver = errors.New("vk: incompatible driver")
	ErrTimeout            = errors.New("vk: timeout")
	ErrClosed             = errors.New("vk: object is closed")
	ErrValidation         = errors.New("vk: validation error")
)

// result turns a VkResult into nil or an error naming the call.
func result(call string, r vk.Result) error {
	var base error
	switch r {
	case vk.Success:
		return nil
	case vk.ErrorDeviceLost:
		base = ErrDeviceLost
	case vk.ErrorOutOfDeviceMemory:
		base = ErrOutOfDeviceMemory
	case vk.ErrorOutOfHostMemory:
		base = ErrOutOfHostMemory
	case vk.ErrorExtensionNotPresent:
		base = ErrExtensionMissing
	case vk.ErrorFeatureNotPresent:
		base = ErrFeatureMissing
	case vk.ErrorLayerNotPresent:
		base = ErrLayerMissing
	case vk.ErrorInitializationFailed:
		base = ErrInitialization
	case vk.ErrorIncompatibleDriver:
		base = ErrIncompatibleDriver
	case vk.Timeout:
		base = ErrTimeout
	default:
		return fmt.Errorf("vk: %s: VkResult %d", call, int32(r))
	}
	return fmt.Errorf("%s: %w", call, base)
}
