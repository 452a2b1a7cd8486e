# Shim only: CMakeLists.txt is the one build definition (see README "Building from source").
# package.json sets "gypfile": false so npm never runs node-gyp; tools that look for a
# binding.gyp find this no-op target instead of a second set of sources and flags.
{
  "targets": [
    {
      "target_name": "cuda_llama_cmake_shim",
      "type": "none"
    }
  ]
}
