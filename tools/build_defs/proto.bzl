"""Protobuf / gRPC C++ code generation with Debian's protoc (no downloads)."""

def postern_proto_library(name, srcs, deps = [], grpc = False, visibility = None):
    """C++ library `name` generated from `srcs` (.proto files in this package).

    Args:
      name: the cc_library.
      srcs: .proto files.
      deps: other postern_proto_library targets whose .proto files are imported.
      grpc: also generate gRPC service stubs (links gRPC: control plane only).
      visibility: as usual.
    """
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ".pb.h", base + ".pb.cc"]
        if grpc:
            outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]

    dep_srcs = [d + "_proto_srcs" for d in deps]
    native.filegroup(
        name = name + "_proto_srcs",
        srcs = srcs + dep_srcs,
        visibility = visibility,
    )

    grpc_flags = ""
    tools = []
    if grpc:
        grpc_flags = "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin --grpc_out=$(GENDIR) "

    native.genrule(
        name = name + "_gen",
        srcs = srcs + dep_srcs,
        outs = outs,
        cmd = ("/usr/bin/protoc -I. -I$(GENDIR) -I/usr/include --cpp_out=$(GENDIR) " +
               grpc_flags +
               " ".join(["$(location %s)" % s for s in srcs])),
    )

    lib_deps = deps + ["//third_party:protobuf"]
    if grpc:
        lib_deps.append("//third_party:grpc")
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = lib_deps,
        visibility = visibility,
    )
