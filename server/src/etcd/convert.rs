//! Field-for-field conversions between etcd's protobuf messages and the kv machine's types.

use conclave_statemachines::kv;
use tonic::Status;

use super::proto::etcdserverpb as pb;
use super::proto::mvccpb;

/// A key-value as etcd sends it.
pub(crate) fn key_value(value: kv::KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: value.key,
        create_revision: value.create_revision,
        mod_revision: value.mod_revision,
        version: value.version,
        value: value.value,
        lease: value.lease,
    }
}

pub(crate) fn range_request(request: &pb::RangeRequest) -> kv::RangeRequest {
    use pb::range_request::{SortOrder, SortTarget};
    kv::RangeRequest {
        key: request.key.clone(),
        range_end: request.range_end.clone(),
        limit: request.limit,
        revision: request.revision,
        sort_order: match request.sort_order() {
            SortOrder::None => kv::SortOrder::None,
            SortOrder::Ascend => kv::SortOrder::Ascend,
            SortOrder::Descend => kv::SortOrder::Descend,
        },
        sort_target: match request.sort_target() {
            SortTarget::Key => kv::SortTarget::Key,
            SortTarget::Version => kv::SortTarget::Version,
            SortTarget::Create => kv::SortTarget::Create,
            SortTarget::Mod => kv::SortTarget::Mod,
            SortTarget::Value => kv::SortTarget::Value,
        },
        keys_only: request.keys_only,
        count_only: request.count_only,
        min_mod_revision: request.min_mod_revision,
        max_mod_revision: request.max_mod_revision,
        min_create_revision: request.min_create_revision,
        max_create_revision: request.max_create_revision,
    }
}

pub(crate) fn range_response(
    response: kv::RangeResponse,
    header: Option<pb::ResponseHeader>,
) -> pb::RangeResponse {
    pb::RangeResponse {
        header,
        kvs: response.kvs.into_iter().map(key_value).collect(),
        more: response.more,
        count: response.count,
    }
}

pub(crate) fn put_request(request: pb::PutRequest) -> kv::PutRequest {
    kv::PutRequest {
        key: request.key,
        value: request.value,
        lease: request.lease,
        prev_kv: request.prev_kv,
        ignore_value: request.ignore_value,
        ignore_lease: request.ignore_lease,
    }
}

pub(crate) fn put_response(
    response: kv::PutResponse,
    header: Option<pb::ResponseHeader>,
) -> pb::PutResponse {
    pb::PutResponse {
        header,
        prev_kv: response.prev_kv.map(key_value),
    }
}

pub(crate) fn delete_request(request: pb::DeleteRangeRequest) -> kv::DeleteRangeRequest {
    kv::DeleteRangeRequest {
        key: request.key,
        range_end: request.range_end,
        prev_kv: request.prev_kv,
    }
}

pub(crate) fn delete_response(
    response: kv::DeleteRangeResponse,
    header: Option<pb::ResponseHeader>,
) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header,
        deleted: response.deleted,
        prev_kvs: response.prev_kvs.into_iter().map(key_value).collect(),
    }
}

fn compare(compare: pb::Compare) -> Result<kv::Compare, Status> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let result = match compare.result() {
        CompareResult::Equal => kv::CompareResult::Equal,
        CompareResult::Greater => kv::CompareResult::Greater,
        CompareResult::Less => kv::CompareResult::Less,
        CompareResult::NotEqual => kv::CompareResult::NotEqual,
    };
    // etcd reads the operand that matches the target and treats an absent one as zero
    // (or the empty value), which is what proto3 defaults give.
    let operand = compare.target_union.clone();
    let integer = |wanted: fn(&TargetUnion) -> Option<i64>| operand.as_ref().and_then(wanted);
    let target = match compare.target() {
        CompareTarget::Version => kv::CompareTarget::Version(
            integer(|union| match union {
                TargetUnion::Version(value) => Some(*value),
                _ => None,
            })
            .unwrap_or(0),
        ),
        CompareTarget::Create => kv::CompareTarget::Create(
            integer(|union| match union {
                TargetUnion::CreateRevision(value) => Some(*value),
                _ => None,
            })
            .unwrap_or(0),
        ),
        CompareTarget::Mod => kv::CompareTarget::Mod(
            integer(|union| match union {
                TargetUnion::ModRevision(value) => Some(*value),
                _ => None,
            })
            .unwrap_or(0),
        ),
        CompareTarget::Lease => kv::CompareTarget::Lease(
            integer(|union| match union {
                TargetUnion::Lease(value) => Some(*value),
                _ => None,
            })
            .unwrap_or(0),
        ),
        CompareTarget::Value => kv::CompareTarget::Value(match operand {
            Some(TargetUnion::Value(value)) => value,
            _ => Vec::new(),
        }),
    };
    Ok(kv::Compare {
        key: compare.key,
        range_end: compare.range_end,
        result,
        target,
    })
}

fn request_op(op: pb::RequestOp, depth: u32) -> Result<kv::RequestOp, Status> {
    use pb::request_op::Request;
    match op.request {
        Some(Request::RequestRange(range)) => Ok(kv::RequestOp::Range(range_request(&range))),
        Some(Request::RequestPut(put)) => Ok(kv::RequestOp::Put(put_request(put))),
        Some(Request::RequestDeleteRange(delete)) => {
            Ok(kv::RequestOp::DeleteRange(delete_request(delete)))
        }
        Some(Request::RequestTxn(txn)) => Ok(kv::RequestOp::Txn(txn_request(txn, depth + 1)?)),
        None => Err(Status::invalid_argument(
            "etcdserver: a request op carries no request",
        )),
    }
}

/// A transaction, refusing ones nested deeper than the kv machine decodes (so the refusal
/// is an etcd-style error rather than a malformed payload).
pub(crate) fn txn_request(request: pb::TxnRequest, depth: u32) -> Result<kv::TxnRequest, Status> {
    if depth > kv::TXN_DEPTH_MAX {
        return Err(Status::invalid_argument(
            "etcdserver: transactions nested too deeply",
        ));
    }
    let ops = |list: Vec<pb::RequestOp>| -> Result<Vec<kv::RequestOp>, Status> {
        list.into_iter().map(|op| request_op(op, depth)).collect()
    };
    Ok(kv::TxnRequest {
        compare: request
            .compare
            .into_iter()
            .map(compare)
            .collect::<Result<_, _>>()?,
        success: ops(request.success)?,
        failure: ops(request.failure)?,
    })
}

pub(crate) fn txn_response(
    response: kv::TxnResponse,
    header: Option<pb::ResponseHeader>,
) -> pb::TxnResponse {
    use pb::response_op::Response;
    let responses = response
        .responses
        .into_iter()
        .map(|op| pb::ResponseOp {
            response: Some(match op {
                kv::ResponseOp::Range(range) => {
                    Response::ResponseRange(range_response(range, header))
                }
                kv::ResponseOp::Put(put) => Response::ResponsePut(put_response(put, header)),
                kv::ResponseOp::DeleteRange(delete) => {
                    Response::ResponseDeleteRange(delete_response(delete, header))
                }
                kv::ResponseOp::Txn(nested) => Response::ResponseTxn(txn_response(nested, header)),
            }),
        })
        .collect();
    pb::TxnResponse {
        header,
        succeeded: response.succeeded,
        responses,
    }
}

/// A watch event as etcd sends it.
pub(crate) fn event(event: kv::WatchEvent) -> mvccpb::Event {
    let kind = match event.kind {
        kv::EventKind::Put => mvccpb::event::EventType::Put,
        kv::EventKind::Delete => mvccpb::event::EventType::Delete,
    };
    mvccpb::Event {
        r#type: kind as i32,
        kv: Some(key_value(event.kv)),
        prev_kv: event.prev_kv.map(key_value),
    }
}
