# tokenbroker_generate_protos(TARGET name PROTO_ROOT dir PROTOS a.proto ... [GRPC a.proto ...])
# Generates C++ (and gRPC stubs for the files listed after GRPC) into the build
# tree and builds them as a static library.
function(tokenbroker_generate_protos)
  cmake_parse_arguments(ARG "" "TARGET;PROTO_ROOT" "PROTOS;GRPC" ${ARGN})
  set(out "${CMAKE_BINARY_DIR}/gen")
  set(sources)
  foreach(proto IN LISTS ARG_PROTOS)
    string(REGEX REPLACE "\\.proto$" "" base "${proto}")
    set(outputs "${out}/${base}.pb.cc" "${out}/${base}.pb.h")
    set(grpc_args)
    if(proto IN_LIST ARG_GRPC)
      list(APPEND outputs "${out}/${base}.grpc.pb.cc" "${out}/${base}.grpc.pb.h")
      set(grpc_args "--grpc_out=${out}" "--plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN}")
    endif()
    add_custom_command(
      OUTPUT ${outputs}
      COMMAND ${CMAKE_COMMAND} -E make_directory "${out}"
      COMMAND protobuf::protoc "--proto_path=${ARG_PROTO_ROOT}" "--cpp_out=${out}" ${grpc_args}
              "${ARG_PROTO_ROOT}/${proto}"
      DEPENDS "${ARG_PROTO_ROOT}/${proto}" protobuf::protoc
      COMMENT "protoc ${proto}"
      VERBATIM)
    foreach(o IN LISTS outputs)
      if(o MATCHES "\\.cc$")
        list(APPEND sources "${o}")
      endif()
    endforeach()
  endforeach()
  add_library(${ARG_TARGET} STATIC ${sources})
  target_include_directories(${ARG_TARGET} PUBLIC "${out}")
  target_link_libraries(${ARG_TARGET} PUBLIC protobuf::libprotobuf gRPC::grpc++)
endfunction()
