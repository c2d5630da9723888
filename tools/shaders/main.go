// Command shaders compiles the kernels listed in the shaders package's registry from GLSL to
// SPIR-V with glslangValidator, validates each with spirv-val, and writes shaders/spv/. With
// -check it compiles into a temporary directory and fails if any committed .spv differs.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/vkattn/vkattn/shaders"
)

func main() {
	glslang := flag.String("glslang", "glslangValidator", "glslangValidator binary (16 or newer)")
	spirvVal := flag.String("spirv-val", "spirv-val", "spirv-val binary")
	dir := flag.String("dir", "shaders", "the shaders package directory")
	check := flag.Bool("check", false, "fail if the committed SPIR-V differs from the sources")
	flag.Parse()
	if err := run(*glslang, *spirvVal, *dir, *check); err != nil {
		fmt.Fprintln(os.Stderr, "shaders:", err)
		os.Exit(1)
	}
}

func run(glslang, spirvVal, dir string, check bool) error {
	out := filepath.Join(dir, "spv")
	if check {
		tmp, err := os.MkdirTemp("", "vkattn-spv")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		out = tmp
	}
	stale := 0
	for _, v := range shaders.Variants {
		dst := filepath.Join(out, v.Name+".spv")
		args := []string{"-V", "--target-env", v.TargetEnv(), "-I" + filepath.Join(dir, "glsl"), "-o", dst}
		for _, d := range v.Defines {
			args = append(args, "-D"+d)
		}
		args = append(args, filepath.Join(dir, "glsl", v.Source))
		if b, err := exec.Command(glslang, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v\n%s", v.Name, err, b)
		}
		if b, err := exec.Command(spirvVal, "--target-env", v.TargetEnv(), dst).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: spirv-val: %v\n%s", v.Name, err, b)
		}
		if check {
			fresh, _ := os.ReadFile(dst)
			committed, err := os.ReadFile(filepath.Join(dir, "spv", v.Name+".spv"))
			if err != nil || !bytes.Equal(fresh, committed) {
				fmt.Fprintf(os.Stderr, "shaders: spv/%s.spv is stale: run make shaders\n", v.Name)
				stale++
			}
		}
		fmt.Printf("%-24s %s %v\n", v.Name, v.Source, v.Defines)
	}
	if check {
		known := map[string]bool{"README.md": true}
		for _, v := range shaders.Variants {
			known[v.Name+".spv"] = true
		}
		entries, err := os.ReadDir(filepath.Join(dir, "spv"))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !known[e.Name()] {
				fmt.Fprintf(os.Stderr, "shaders: spv/%s is not in the registry: remove it\n", e.Name())
				stale++
			}
		}
	}
	if stale > 0 {
		return fmt.Errorf("%d SPIR-V file(s) differ from their sources", stale)
	}
	return nil
}
