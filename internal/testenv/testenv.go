// Package testenv gives tests a Vulkan device: with the validation layer on where it is
// installed, failing the test on any validation error, and failing rather than skipping when
// VKATTN_REQUIRE_DEVICE=1 and no device can be opened. Only the absence of Vulkan or of a
// device skips; any other failure to open one fails the test.
package testenv

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/vkattn/vkattn/devices"
	"github.com/vkattn/vkattn/vk"
)

// RequireDeviceEnv makes a missing Vulkan device a test failure instead of a skip.
const RequireDeviceEnv = "VKATTN_REQUIRE_DEVICE"

// ValidationEnv set to 0 turns the validation layer off in tests (for timing runs).
const ValidationEnv = "VKATTN_VALIDATION"

// Required reports whether tests must fail when no device exists.
func Required() bool { return os.Getenv(RequireDeviceEnv) == "1" }

// Validation reports whether tests should run with the validation layer.
func Validation() bool {
	if os.Getenv(ValidationEnv) == "0" {
		return false
	}
	return vk.LayerAvailable(vk.ValidationLayer) || Required()
}

// IsNoDevice reports whether err says that this machine has no Vulkan device: no Vulkan loader
// (vk.ErrNoVulkan), a loader without any driver (vkCreateInstance's VK_ERROR_INCOMPATIBLE_DRIVER,
// vk.ErrIncompatibleDriver) or no device, or none that matches $VKATTN_DEVICE (vk.ErrNoDevice).
// Every other error is a failure of a device that exists.
func IsNoDevice(err error) bool {
	return errors.Is(err, vk.ErrNoDevice) || errors.Is(err, vk.ErrNoVulkan) || errors.Is(err, vk.ErrIncompatibleDriver)
}

// NoDevice handles err from opening a device: where it says there is no device (IsNoDevice) it
// skips the test, or fails it when a device is required; any other error fails the test.
func NoDevice(t testing.TB, err error) {
	t.Helper()
	if !IsNoDevice(err) {
		t.Fatalf("opening a Vulkan device failed: %v", err)
	}
	if Required() {
		t.Fatalf("%s=1 but no usable Vulkan device: %v", RequireDeviceEnv, err)
	}
	t.Skipf("no Vulkan device (set %s=1 to make this a failure): %v", RequireDeviceEnv, err)
}

// Lacks skips a test that the device cannot run for want of an optional capability (why says
// which), or fails it when a device is required.
func Lacks(t testing.TB, why error) {
	t.Helper()
	if Required() {
		t.Fatalf("%s=1 and the device lacks what the test needs: %v", RequireDeviceEnv, why)
	}
	t.Skipf("the device cannot run this test (set %s=1 to make this a failure): %v", RequireDeviceEnv, why)
}

// Probe returns nil if a default device can be opened as commands pick it (Vulkan loaded, an
// instance created, devices listed, one selected), else the error that stopped it; without
// validation, for a quick check.
func Probe() error {
	in, err := vk.NewInstance(vk.InstanceOptions{})
	if err != nil {
		return err
	}
	defer in.Close()
	profiles, err := devices.List(in)
	if err != nil {
		return err
	}
	_, err = devices.Select(profiles, "")
	return err
}

// Instance returns an instance for the test, closed at cleanup, whose validation errors fail
// the test at cleanup.
func Instance(t testing.TB) *vk.Instance {
	t.Helper()
	in, err := vk.NewInstance(vk.InstanceOptions{Validation: Validation()})
	if err != nil {
		if errors.Is(err, vk.ErrLayerMissing) {
			t.Fatalf("%v", err)
		}
		NoDevice(t, err)
	}
	t.Cleanup(func() {
		in.Close()
		if err := in.CheckValidation(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return in
}

// CheckValidation fails the test now if validation errors have been reported.
func CheckValidation(t testing.TB, in *vk.Instance) {
	t.Helper()
	if err := in.CheckValidation(); err != nil {
		t.Fatalf("%v", err)
	}
}

// ChildEnv is set to the test's name in the process RunChild starts.
const ChildEnv = "VKATTN_TEST_CHILD"

// IsChild reports whether this process was started by RunChild for test t.
func IsChild(t testing.TB) bool { return os.Getenv(ChildEnv) == t.Name() }

// RunChild runs top-level test t again in a fresh process of the test binary with env
// ("KEY=value") added to this process's environment, for what is process-global (the Vulkan
// loader, driver environment variables). It returns the child's output and fails t if the child
// failed. The child sees IsChild(t) true.
func RunChild(t testing.TB, env ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(append(os.Environ(), ChildEnv+"="+t.Name()), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child %v: %v\n%s", env, err, out)
	}
	return string(out)
}
