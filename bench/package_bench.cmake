# package_bench: build-and-push time and image size of the C example.
# Included from bench/CMakeLists.txt (needs tests/package for the example
# binary target and the process helpers).
add_executable(package_bench ${CMAKE_CURRENT_LIST_DIR}/package_bench.cpp ${PROJECT_SOURCE_DIR}/tests/package/proc.cpp)
target_link_libraries(package_bench PRIVATE mp_core)
