{
  "targets": [
    {
      "target_name": "zcopy",
      "sources": [
        "native/addon.c",
        "native/io.c",
        "native/poll.c",
        "native/file.c",
        "native/splice.c",
        "native/mmap.c",
        "native/receive.c",
        "native/bench.c",
        "native/crc32c.c",
        "native/http.c"
      ],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "conditions": [
        ["OS!='linux'", { "sources!": ["native/io.c", "native/poll.c", "native/file.c", "native/splice.c", "native/mmap.c", "native/bench.c", "native/receive.c"], "sources": ["native/unsupported.c"] }]
      ]
    }
  ]
}
