for f in .gl/*.deb; do dpkg -x $f / ; done; ldconfig
printf '{"file_format_version":"1.0.1","ICD":{"library_path":"libEGL_nvidia.so.0","api_version":"1.4.312"}}\n' >/tmp/egl.json; export VK_DRIVER_FILES=/tmp/egl.json
bin/vkattn conformance -validation -tiers coopmat -out $OUT/cm 2>/dev/null | tail -4
VKATTN_REQUIRE_DEVICE=1 bin/attention.test -test.run 'NaN|Select' 2>&1 | tail -2
bin/vkattn bench -tiers coopmat $BENCH 2>/dev/null | tail -26
