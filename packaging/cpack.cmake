# The Debian package: "cpack -G DEB" in the build directory, or
# "cmake --build build --target package". It holds what install.cmake
# installs, under /usr; test and bench binaries have no install rules and
# stay out of it. Library dependencies come from dpkg-shlibdeps (dpkg-dev).

set(CPACK_PACKAGE_NAME qcfs)
set(CPACK_PACKAGE_VENDOR "QCFS")
set(CPACK_PACKAGE_CONTACT "QCFS maintainers <qcfs@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "compressing, deduplicating, checksumming file system (FUSE)")
# No double quotes in the description: CPackConfig.cmake does not escape them.
set(CPACK_PACKAGE_DESCRIPTION [=[
QCFS is a Linux file system, served through FUSE, that compresses
everything it stores (LZ4 or ZSTD), keeps identical content once (SHA-256
content addressing), checksums every block it reads back and takes instant
read-only snapshots.

A volume lives on an image file or a block device. It mounts with
qcfs mount, with mount -t fuse.qcfs, from an fstab line, or as the
qcfs@.service systemd template unit.]=])
string(STRIP "${CPACK_PACKAGE_DESCRIPTION}" CPACK_PACKAGE_DESCRIPTION)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# mount.fuse3 and fusermount3 (mount -t fuse.qcfs, the unit's ExecStopPost).
set(CPACK_DEBIAN_PACKAGE_DEPENDS "fuse3")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "bash-completion")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_CURRENT_LIST_DIR}/debian/postinst;${CMAKE_CURRENT_LIST_DIR}/debian/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
