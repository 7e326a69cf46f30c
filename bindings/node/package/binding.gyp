# Builds metaparticle_package.node against libmetaparticle's C ABI.
# scripts/install.js stages the headers and the shared library in .native/
# first (building the library with CMake when needed); the library is copied
# next to the addon and found there at run time through RPATH $ORIGIN, so the
# installed package needs nothing from LD_LIBRARY_PATH.
{
  'targets': [
    {
      'target_name': 'metaparticle_package',
      'sources': ['src/addon.cc'],
      # metaparticle.h and node-addon-api's headers (vendored, so that a
      # linked folder and an offline tarball build without npm dependencies).
      'include_dirs': ['.native/include'],
      # What node-addon-api's node_addon_api_except target sets: C++ exceptions.
      'defines': ['NAPI_VERSION=8', 'NAPI_CPP_EXCEPTIONS'],
      'cflags!': ['-fno-exceptions'],
      'cflags_cc!': ['-fno-exceptions'],
      'cflags_cc': ['-std=c++17', '-Wall', '-Wextra'],
      'libraries': ['<(module_root_dir)/.native/lib/libmetaparticle.so.0'],
      'ldflags': ["-Wl,-rpath,'$$ORIGIN'"],
      'copies': [
        {
          'destination': '<(PRODUCT_DIR)',
          'files': ['.native/lib/libmetaparticle.so.0']
        }
      ]
    }
  ]
}
