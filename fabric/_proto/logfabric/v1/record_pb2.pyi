from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExceptionRelation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXCEPTION_RELATION_RAISED: _ClassVar[ExceptionRelation]
    EXCEPTION_RELATION_CAUSE: _ClassVar[ExceptionRelation]
    EXCEPTION_RELATION_CONTEXT: _ClassVar[ExceptionRelation]
EXCEPTION_RELATION_RAISED: ExceptionRelation
EXCEPTION_RELATION_CAUSE: ExceptionRelation
EXCEPTION_RELATION_CONTEXT: ExceptionRelation

class AnyValue(_message.Message):
    __slots__ = ("string_value", "bool_value", "int_value", "double_value", "json_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOL_VALUE_FIELD_NUMBER: _ClassVar[int]
    INT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_VALUE_FIELD_NUMBER: _ClassVar[int]
    JSON_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    bool_value: bool
    int_value: int
    double_value: float
    json_value: str
    def __init__(self, string_value: _Optional[str] = ..., bool_value: _Optional[bool] = ..., int_value: _Optional[int] = ..., double_value: _Optional[float] = ..., json_value: _Optional[str] = ...) -> None: ...

class ExceptionInfo(_message.Message):
    __slots__ = ("type", "message", "relation")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    type: str
    message: str
    relation: ExceptionRelation
    def __init__(self, type: _Optional[str] = ..., message: _Optional[str] = ..., relation: _Optional[_Union[ExceptionRelation, str]] = ...) -> None: ...

class Producer(_message.Message):
    __slots__ = ("service", "host", "pid", "producer_id", "seq")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    service: str
    host: str
    pid: int
    producer_id: int
    seq: int
    def __init__(self, service: _Optional[str] = ..., host: _Optional[str] = ..., pid: _Optional[int] = ..., producer_id: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...

class LogRecord(_message.Message):
    __slots__ = ("time_unix_nano", "severity_number", "severity_text", "body", "attributes", "name", "levelno", "pathname", "filename", "module", "lineno", "func_name", "msecs", "relative_created", "thread", "thread_name", "process", "process_name", "task_name", "exc_text", "stack_info", "exceptions", "producer")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: AnyValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[AnyValue, _Mapping]] = ...) -> None: ...
    TIME_UNIX_NANO_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_NUMBER_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_TEXT_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEVELNO_FIELD_NUMBER: _ClassVar[int]
    PATHNAME_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    LINENO_FIELD_NUMBER: _ClassVar[int]
    FUNC_NAME_FIELD_NUMBER: _ClassVar[int]
    MSECS_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_CREATED_FIELD_NUMBER: _ClassVar[int]
    THREAD_FIELD_NUMBER: _ClassVar[int]
    THREAD_NAME_FIELD_NUMBER: _ClassVar[int]
    PROCESS_FIELD_NUMBER: _ClassVar[int]
    PROCESS_NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_NAME_FIELD_NUMBER: _ClassVar[int]
    EXC_TEXT_FIELD_NUMBER: _ClassVar[int]
    STACK_INFO_FIELD_NUMBER: _ClassVar[int]
    EXCEPTIONS_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_FIELD_NUMBER: _ClassVar[int]
    time_unix_nano: int
    severity_number: int
    severity_text: str
    body: str
    attributes: _containers.MessageMap[str, AnyValue]
    name: str
    levelno: int
    pathname: str
    filename: str
    module: str
    lineno: int
    func_name: str
    msecs: float
    relative_created: float
    thread: int
    thread_name: str
    process: int
    process_name: str
    task_name: str
    exc_text: str
    stack_info: str
    exceptions: _containers.RepeatedCompositeFieldContainer[ExceptionInfo]
    producer: Producer
    def __init__(self, time_unix_nano: _Optional[int] = ..., severity_number: _Optional[int] = ..., severity_text: _Optional[str] = ..., body: _Optional[str] = ..., attributes: _Optional[_Mapping[str, AnyValue]] = ..., name: _Optional[str] = ..., levelno: _Optional[int] = ..., pathname: _Optional[str] = ..., filename: _Optional[str] = ..., module: _Optional[str] = ..., lineno: _Optional[int] = ..., func_name: _Optional[str] = ..., msecs: _Optional[float] = ..., relative_created: _Optional[float] = ..., thread: _Optional[int] = ..., thread_name: _Optional[str] = ..., process: _Optional[int] = ..., process_name: _Optional[str] = ..., task_name: _Optional[str] = ..., exc_text: _Optional[str] = ..., stack_info: _Optional[str] = ..., exceptions: _Optional[_Iterable[_Union[ExceptionInfo, _Mapping]]] = ..., producer: _Optional[_Union[Producer, _Mapping]] = ...) -> None: ...
