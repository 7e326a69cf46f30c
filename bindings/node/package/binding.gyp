# Builds metaparticle_package.node against libmetaparticle's C ABI.
# scripts/install.js stages the header and the shared library in .native/
# first (building the library with CMake when needed); the library is copied
# next to the addon and found there at run time through RPATH $ORIGIN, so the
# installed package needs nothing from LD_LIBRARY_PATH.
{
  'targets': [
    {
      'target_name': 'metaparticle_package',
      'sources': ['src/addon.cc'],
      'include_dirs': ['.native/include'],
      'dependencies': ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      'defines': ['NAPI_VERSION=8'],
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
