# Installation layout and the Debian package (CPack). Included from the top
# CMakeLists.txt. `cmake --install build --prefix /usr` gives the same tree as
# the .deb; `cd build && cpack -G DEB` builds geosync_<version>_<arch>.deb.
#
#   bin/geosyncd, bin/geosyncctl            (agent/CMakeLists.txt)
#   share/geosync/schemas/                  JSON Schemas and ddl_capture.sql
#   share/geosync/make-certs.sh             deployment CA and site certificates
#   share/geosync/monitoring/               Prometheus alert rules, Grafana dashboard
#   share/doc/geosync/                      docs/ (runbook, configuration, examples)
#   lib/systemd/system/geosyncd@.service    one instance per /etc/geosync/SITE.json
#   lib/systemd/system/geosync-drill@.{service,timer}  weekly drill on a replica
set(GEOSYNC_PACKAGING_DIR ${CMAKE_CURRENT_LIST_DIR})

install(DIRECTORY ${PROJECT_SOURCE_DIR}/schemas/ DESTINATION share/geosync/schemas)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION share/doc/geosync)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/monitoring/ DESTINATION share/geosync/monitoring)
install(PROGRAMS ${PROJECT_SOURCE_DIR}/scripts/make-certs.sh DESTINATION share/geosync)
install(FILES ${GEOSYNC_PACKAGING_DIR}/geosyncd@.service ${GEOSYNC_PACKAGING_DIR}/geosync-drill@.service
              ${GEOSYNC_PACKAGING_DIR}/geosync-drill@.timer DESTINATION lib/systemd/system)

set(CPACK_PACKAGE_NAME geosync)
set(CPACK_PACKAGE_VENDOR "geosync")
set(CPACK_PACKAGE_CONTACT "geosync maintainers <geosync@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "cross-region disaster recovery replication for PostgreSQL")
set(CPACK_PACKAGE_DESCRIPTION
    "geosyncd keeps PostgreSQL 15 databases in remote sites current with a primary\n\
through logical decoding, a durable spool and mutual-TLS streaming; geosyncctl\n\
is the DBA's CLI (status, check-config, skip/resume).")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Library dependencies (libpq5, libssl3, libzstd1, libfmt9, libspdlog1.10...)
# come from dpkg-shlibdeps; the tools the package calls are listed.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "openssl, postgresql-client-15")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "postgresql-15, prometheus")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${GEOSYNC_PACKAGING_DIR}/postinst ${GEOSYNC_PACKAGING_DIR}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
