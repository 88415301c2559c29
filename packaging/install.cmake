# What "cmake --install" puts beside the qcfs binary: the umount(8) helper
# umount.fuse.qcfs, the qcfs(8) man page, bash completion, the systemd
# template unit qcfs@.service and an example of its configuration. Paths
# follow GNUInstallDirs; DESTDIR and CMAKE_INSTALL_PREFIX (or --prefix) are
# honoured. Included from the top-level CMakeLists.txt after
# include(GNUInstallDirs).

set(QCFS_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "Where qcfs@.service goes: relative to the install prefix, or absolute")
set(QCFS_BASH_COMPLETION_DIR "${CMAKE_INSTALL_DATADIR}/bash-completion/completions" CACHE STRING
    "Where the bash completion goes: relative to the install prefix, or absolute")
# umount(8) runs /sbin/umount.fuse.qcfs for a fuse.qcfs mount, and libmount
# looks for helpers in /sbin only (on Debian, /sbin is /usr/sbin). With the
# prefix /usr (the Debian package) the default is that directory; with
# /usr/local it is not, and a plain umount does not flush and wait: pass
# -DQCFS_UMOUNT_HELPER_DIR=/usr/sbin, or unmount with "qcfs umount".
set(QCFS_UMOUNT_HELPER_DIR "${CMAKE_INSTALL_SBINDIR}" CACHE STRING
    "Where the umount(8) helper umount.fuse.qcfs goes: relative to the install prefix, or absolute")

set(QCFS_PACKAGING_GENERATED_DIR "${PROJECT_BINARY_DIR}/packaging")
find_program(QCFS_GZIP gzip)

# The unit names the installed binary, and the man page is compressed, when
# installing: the prefix is only known then (cpack installs with /usr,
# whatever the build was configured with).
install(CODE "
  set(QCFS_SOURCE_DIR \"${PROJECT_SOURCE_DIR}\")
  set(QCFS_PACKAGING_GENERATED_DIR \"${QCFS_PACKAGING_GENERATED_DIR}\")
  set(QCFS_INSTALL_BINDIR \"${CMAKE_INSTALL_BINDIR}\")
  set(QCFS_GZIP \"${QCFS_GZIP}\")
")
install(SCRIPT "${CMAKE_CURRENT_LIST_DIR}/generate.cmake")

# umount.fuse.qcfs: a symbolic link to the qcfs binary, which unmounts as
# "qcfs umount" does when run under that name. The link is relative (as
# ../bin/qcfs), so that it holds inside DESTDIR and a package, and it is
# computed when installing, for the same reason as the unit.
install(CODE "
  set(qcfs_helper_dir \"${QCFS_UMOUNT_HELPER_DIR}\")
  set(qcfs_bin_dir \"${CMAKE_INSTALL_BINDIR}\")
  foreach(qcfs_dir qcfs_helper_dir qcfs_bin_dir)
    if(NOT IS_ABSOLUTE \"\${\${qcfs_dir}}\")
      set(\${qcfs_dir} \"\${CMAKE_INSTALL_PREFIX}/\${\${qcfs_dir}}\")
    endif()
    cmake_path(NORMAL_PATH \${qcfs_dir})
  endforeach()
  file(RELATIVE_PATH qcfs_helper_target \"\${qcfs_helper_dir}\" \"\${qcfs_bin_dir}/qcfs\")
  file(MAKE_DIRECTORY \"${QCFS_PACKAGING_GENERATED_DIR}/sbin\")
  file(CREATE_LINK \"\${qcfs_helper_target}\" \"${QCFS_PACKAGING_GENERATED_DIR}/sbin/umount.fuse.qcfs\" SYMBOLIC)
")
# install(FILES) copies a link as a link, and deals with DESTDIR and an
# absolute destination as for any other file.
install(FILES "${QCFS_PACKAGING_GENERATED_DIR}/sbin/umount.fuse.qcfs" DESTINATION "${QCFS_UMOUNT_HELPER_DIR}")

install(FILES "${QCFS_PACKAGING_GENERATED_DIR}/qcfs@.service" DESTINATION "${QCFS_SYSTEMD_UNIT_DIR}")
if(QCFS_GZIP)
  install(FILES "${QCFS_PACKAGING_GENERATED_DIR}/qcfs.8.gz" DESTINATION "${CMAKE_INSTALL_MANDIR}/man8")
else()
  install(FILES "${PROJECT_SOURCE_DIR}/docs/qcfs.8" DESTINATION "${CMAKE_INSTALL_MANDIR}/man8")
endif()
install(FILES "${CMAKE_CURRENT_LIST_DIR}/bash-completion/qcfs" DESTINATION "${QCFS_BASH_COMPLETION_DIR}")
install(FILES "${CMAKE_CURRENT_LIST_DIR}/qcfs.conf.example" DESTINATION "${CMAKE_INSTALL_DOCDIR}")
