# What "cmake --install" puts beside the qcfs binary: the qcfs(8) man page,
# bash completion, the systemd template unit qcfs@.service and an example of
# its configuration. Paths follow GNUInstallDirs; DESTDIR and
# CMAKE_INSTALL_PREFIX (or --prefix) are honoured. Included from the
# top-level CMakeLists.txt after include(GNUInstallDirs).

set(QCFS_SYSTEMD_UNIT_DIR "lib/systemd/system" CACHE STRING
    "Where qcfs@.service goes: relative to the install prefix, or absolute")
set(QCFS_BASH_COMPLETION_DIR "${CMAKE_INSTALL_DATADIR}/bash-completion/completions" CACHE STRING
    "Where the bash completion goes: relative to the install prefix, or absolute")

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

install(FILES "${QCFS_PACKAGING_GENERATED_DIR}/qcfs@.service" DESTINATION "${QCFS_SYSTEMD_UNIT_DIR}")
if(QCFS_GZIP)
  install(FILES "${QCFS_PACKAGING_GENERATED_DIR}/qcfs.8.gz" DESTINATION "${CMAKE_INSTALL_MANDIR}/man8")
else()
  install(FILES "${PROJECT_SOURCE_DIR}/docs/qcfs.8" DESTINATION "${CMAKE_INSTALL_MANDIR}/man8")
endif()
install(FILES "${CMAKE_CURRENT_LIST_DIR}/bash-completion/qcfs" DESTINATION "${QCFS_BASH_COMPLETION_DIR}")
install(FILES "${CMAKE_CURRENT_LIST_DIR}/qcfs.conf.example" DESTINATION "${CMAKE_INSTALL_DOCDIR}")
