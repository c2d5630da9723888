package testenv

import (
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/vkattn/vkattn/vk"
)

// recorder is a testing.TB that records a failure or skip instead of reporting it; Fatalf and
// Skipf end the goroutine as testing's do.
type recorder struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// record runs f on a recorder in its own goroutine, as a test body runs.
func record(t *testing.T, f func(testing.TB)) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(r)
	}()
	<-done
	return r
}

func TestIsNoDevice(t *testing.T) {
	for _, err := range []error{vk.ErrNoDevice, vk.ErrNoVulkan, vk.ErrIncompatibleDriver,
		fmt.Errorf("attention: vkCreateInstance: %w", vk.ErrIncompatibleDriver),
		fmt.Errorf("attention: devices: %w", vk.ErrNoDevice)} {
		if !IsNoDevice(err) {
			t.Errorf("IsNoDevice(%v) = false", err)
		}
	}
	for _, err := range []error{nil, errors.New("pipeline creation failed"), vk.ErrLayerMissing, vk.ErrExtensionMissing,
		vk.ErrFeatureMissing, vk.ErrInitialization, vk.ErrDeviceLost, vk.ErrOutOfDeviceMemory, vk.ErrValidation,
		fmt.Errorf("attention: llvmpipe: vkCreateDevice: %w", vk.ErrFeatureMissing)} {
		if IsNoDevice(err) {
			t.Errorf("IsNoDevice(%v) = true", err)
		}
	}
}

// NoDevice skips only when there is no device, and then only when none is required; any other
// error fails.
func TestNoDevice(t *testing.T) {
	noDevice := fmt.Errorf("attention: devices: %w", vk.ErrNoDevice)
	broken := fmt.Errorf("attention: llvmpipe: vkCreateDevice: %w", vk.ErrFeatureMissing)
	for _, c := range []struct {
		require string
		err     error
		skipped bool
	}{
		{"", noDevice, true},
		{"1", noDevice, false},
		{"", broken, false},
		{"1", broken, false},
		{"", errors.New("no shaders"), false},
	} {
		t.Setenv(RequireDeviceEnv, c.require)
		r := record(t, func(tb testing.TB) { NoDevice(tb, c.err) })
		if r.skipped != c.skipped || r.failed == c.skipped {
			t.Errorf("%s=%q, %v: skipped %v, failed %v (%s)", RequireDeviceEnv, c.require, c.err, r.skipped, r.failed, r.msg)
		}
	}
	t.Setenv(RequireDeviceEnv, "")
	if r := record(t, func(tb testing.TB) { Lacks(tb, errors.New("no timestamps")) }); !r.skipped {
		t.Errorf("Lacks without a required device: %s", r.msg)
	}
	t.Setenv(RequireDeviceEnv, "1")
	if r := record(t, func(tb testing.TB) { Lacks(tb, errors.New("no timestamps")) }); !r.failed {
		t.Errorf("Lacks with a required device: %s", r.msg)
	}
}
