# Builds libmetaparticle (and, when asked, other targets) from a source tree
# into ONE build directory that every in-tree installer shares: the Python
# backend, the Node install script and the .NET pack each call this, so
# installing several bindings from one clone compiles the core once.
#
#   cmake -DSOURCE_DIR=<repo> [-DBUILD_DIR=<dir>] [-DTARGETS="metaparticle;mp-sidecar"]
#         [-DJOBS=N] -P scripts/build-core.cmake
#
# BUILD_DIR defaults to <repo>/build-core (ignored by git). A file lock in it
# serialises concurrent callers (npm runs the install scripts of two linked
# packages at once): a second caller waits, then finds the work done.
cmake_minimum_required(VERSION 3.20)

if(NOT SOURCE_DIR OR NOT EXISTS "${SOURCE_DIR}/include/metaparticle.h")
  message(FATAL_ERROR "build-core.cmake: SOURCE_DIR must name a Metaparticle source tree (got '${SOURCE_DIR}')")
endif()
if(NOT BUILD_DIR)
  set(BUILD_DIR "${SOURCE_DIR}/build-core")
endif()
if(NOT TARGETS)
  set(TARGETS metaparticle)
endif()
if(NOT JOBS)
  if(DEFINED ENV{CMAKE_BUILD_PARALLEL_LEVEL})
    set(JOBS "$ENV{CMAKE_BUILD_PARALLEL_LEVEL}")
  else()
    cmake_host_system_information(RESULT JOBS QUERY NUMBER_OF_LOGICAL_CORES)
  endif()
endif()

file(MAKE_DIRECTORY "${BUILD_DIR}")
message(STATUS "build-core: waiting for the lock on ${BUILD_DIR}")
file(LOCK "${BUILD_DIR}/.build-core.lock" GUARD PROCESS TIMEOUT 3600 RESULT_VARIABLE locked)
if(NOT locked EQUAL 0)
  message(FATAL_ERROR "build-core.cmake: could not lock ${BUILD_DIR}/.build-core.lock: ${locked}")
endif()

if(NOT EXISTS "${BUILD_DIR}/CMakeCache.txt")
  execute_process(
    COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${BUILD_DIR}"
            -DCMAKE_BUILD_TYPE=Release
            -DMP_BUILD_TESTS=OFF -DMP_BUILD_EXAMPLES=OFF -DMP_BUILD_BENCH=OFF
    RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    file(REMOVE "${BUILD_DIR}/CMakeCache.txt")
    message(FATAL_ERROR "build-core.cmake: configuring ${SOURCE_DIR} failed; see above (missing build dependencies? Debian: scripts/install-deps.sh)")
  endif()
endif()

set(target_args)
foreach(t IN LISTS TARGETS)
  list(APPEND target_args --target "${t}")
endforeach()
execute_process(
  COMMAND "${CMAKE_COMMAND}" --build "${BUILD_DIR}" ${target_args} --parallel ${JOBS}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "build-core.cmake: building ${TARGETS} in ${BUILD_DIR} failed; see above")
endif()
file(LOCK "${BUILD_DIR}/.build-core.lock" RELEASE)
