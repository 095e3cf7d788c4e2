{
  "targets": [
    {
      "target_name": "baton_plane",
      "sources": ["native/plane.c"],
      "defines": ["NAPI_VERSION=8"],
      "conditions": [
        ["OS=='linux'", {
          "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fvisibility=hidden"]
        }]
      ]
    }
  ]
}
