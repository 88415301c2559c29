# Runs at install time (install(SCRIPT) from install.cmake), when
# CMAKE_INSTALL_PREFIX is the prefix the files will have on the target system.
# REQUIRES: QCFS_SOURCE_DIR, QCFS_PACKAGING_GENERATED_DIR, QCFS_INSTALL_BINDIR,
# QCFS_GZIP (empty: no gzip) set by the install(CODE) before it.

if(IS_ABSOLUTE "${QCFS_INSTALL_BINDIR}")
  set(QCFS_BINDIR "${QCFS_INSTALL_BINDIR}")
else()
  set(QCFS_BINDIR "${CMAKE_INSTALL_PREFIX}/${QCFS_INSTALL_BINDIR}")
endif()
configure_file("${QCFS_SOURCE_DIR}/packaging/qcfs@.service.in"
               "${QCFS_PACKAGING_GENERATED_DIR}/qcfs@.service" @ONLY)

if(QCFS_GZIP)
  # -n: no name or time stamp inside, so that builds are reproducible.
  execute_process(COMMAND "${QCFS_GZIP}" -9 -n -c "${QCFS_SOURCE_DIR}/docs/qcfs.8"
                  OUTPUT_FILE "${QCFS_PACKAGING_GENERATED_DIR}/qcfs.8.gz"
                  RESULT_VARIABLE gzip_result)
  if(NOT gzip_result EQUAL 0)
    message(FATAL_ERROR "gzip of docs/qcfs.8 failed: ${gzip_result}")
  endif()
endif()
