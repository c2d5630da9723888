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
		return fmt.Errorf("vk: %s: %s", call, resultString(r))
	}
	return fmt.Errorf("%s: %w", call, base)
}

// resultNames names the VkResult codes that have no sentinel error.
var resultNames = map[vk.Result]string{
	vk.NotReady:                   "VK_NOT_READY",
	vk.EventSet:                   "VK_EVENT_SET",
	vk.EventReset:                 "VK_EVENT_RESET",
	vk.Incomplete:                 "VK_INCOMPLETE",
	vk.ErrorMemoryMapFailed:       "VK_ERROR_MEMORY_MAP_FAILED",
	vk.ErrorTooManyObjects:        "VK_ERROR_TOO_MANY_OBJECTS",
	vk.ErrorFormatNotSupported:    "VK_ERROR_FORMAT_NOT_SUPPORTED",
	vk.ErrorFragmentedPool:        "VK_ERROR_FRAGMENTED_POOL",
	vk.ErrorUnknown:               "VK_ERROR_UNKNOWN",
	vk.ErrorOutOfPoolMemory:       "VK_ERROR_OUT_OF_POOL_MEMORY",
	vk.ErrorInvalidExternalHandle: "VK_ERROR_INVALID_EXTERNAL_HANDLE",
	vk.ErrorFragmentation:         "VK_ERROR_FRAGMENTATION",
	vk.ErrorInvalidDeviceAddress:  "VK_ERROR_INVALID_OPAQUE_CAPTURE_ADDRESS",
	vk.PipelineCompileRequired:    "VK_PIPELINE_COMPILE_REQUIRED",
	vk.ErrorValidationFailed:      "VK_ERROR_VALIDATION_FAILED_EXT",
	vk.ErrorNotPermitted:          "VK_ERROR_NOT_PERMITTED_KHR",
	vk.ErrorCompressionExhausted:  "VK_ERROR_COMPRESSION_EXHAUSTED_EXT",
	vk.ThreadIdle:                 "VK_THREAD_IDLE_KHR",
	vk.ThreadDone:                 "VK_THREAD_DONE_KHR",
	vk.OperationDeferred:          "VK_OPERATION_DEFERRED_KHR",
	vk.OperationNotDeferred:       "VK_OPERATION_NOT_DEFERRED_KHR",
}

// resultString is the code's registry name and number, or just the number for a code vk does
// not know.
func resultString(r vk.Result) string {
	if name, ok := resultNames[r]; ok {
		return fmt.Sprintf("%s (VkResult %d)", name, int32(r))
	}
	return fmt.Sprintf("unknown VkResult %d", int32(r))
}
