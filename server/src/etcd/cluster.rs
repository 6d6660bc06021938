//! etcdserverpb.Cluster (members mapped onto Conclave's Raft membership, member ids being
//! node ids) and etcdserverpb.Maintenance (status, alarms, hashes, leader transfer).

use std::pin::Pin;

use conclave_consensus::{MembershipChange, NodeId, Role, Status as NodeStatus};
use conclave_statemachines::kv::{KvQuery, KvResponse, RangeRequest};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::proto::etcdserverpb as pb;
use super::proto::etcdserverpb::cluster_server::{Cluster, ClusterServer};
use super::proto::etcdserverpb::maintenance_server::{Maintenance, MaintenanceServer};
use super::{Backend, convert, status, unexpected};
use crate::gateway::{Consistency, GatewayError};
use crate::node::NodeError;

pub(super) fn cluster_service(
    backend: Backend,
    message_bytes_max: usize,
) -> ClusterServer<ClusterService> {
    ClusterServer::new(ClusterService { backend })
        .max_decoding_message_size(message_bytes_max)
        .max_encoding_message_size(usize::MAX)
}

pub(super) fn maintenance_service(
    backend: Backend,
    message_bytes_max: usize,
) -> MaintenanceServer<MaintenanceService> {
    MaintenanceServer::new(MaintenanceService { backend })
        .max_decoding_message_size(message_bytes_max)
        .max_encoding_message_size(usize::MAX)
}

/// The Cluster service.
#[derive(Debug)]
pub(super) struct ClusterService {
    backend: Backend,
}

/// The Maintenance service.
#[derive(Debug)]
pub(super) struct MaintenanceService {
    backend: Backend,
}

fn node_status(error: NodeError) -> Status {
    status::status_of_gateway_error(&GatewayError::from(error))
}

impl Backend {
    async fn node_status(&self) -> Result<NodeStatus, Status> {
        self.gateway
            .status()
            .await
            .map_err(|error| status::status_of_gateway_error(&error))
    }

    fn member(&self, id: NodeId, is_learner: bool) -> pb::Member {
        let name = if id == self.gateway.node().id() && !self.config.member_name.is_empty() {
            self.config.member_name.clone()
        } else {
            format!("conclave-{id}")
        };
        pb::Member {
            id,
            name,
            peer_ur_ls: self
                .config
                .member_peer_urls
                .get(&id)
                .cloned()
                .unwrap_or_default(),
            client_ur_ls: self
                .config
                .member_client_urls
                .get(&id)
                .cloned()
                .unwrap_or_default(),
            is_learner,
        }
    }

    /// Every member of the membership in force: voters (old and new during a joint change)
    /// and learners.
    fn members(&self, status: &NodeStatus) -> Vec<pb::Member> {
        let membership = &status.membership;
        let mut voters: Vec<NodeId> = membership
            .voters
            .iter()
            .chain(membership.voters_outgoing.iter())
            .copied()
            .collect();
        voters.sort_unstable();
        voters.dedup();
        let mut members: Vec<pb::Member> =
            voters.iter().map(|id| self.member(*id, false)).collect();
        members.extend(
            membership
                .learners
                .iter()
                .filter(|id| !voters.contains(id))
                .map(|id| self.member(*id, true)),
        );
        members
    }

    async fn change_membership(&self, change: MembershipChange) -> Result<Vec<pb::Member>, Status> {
        self.gateway
            .node()
            .change_membership(vec![change])
            .await
            .map_err(node_status)?;
        let status = self.node_status().await?;
        Ok(self.members(&status))
    }

    fn is_member(status: &NodeStatus, id: NodeId) -> bool {
        let membership = &status.membership;
        membership.voters.contains(&id)
            || membership.voters_outgoing.contains(&id)
            || membership.learners.contains(&id)
    }

    /// The crc32 of every live key-value at `revision` (0: current), read on this replica;
    /// replicas that applied the same history give the same hash.
    async fn hash_at(&self, revision: i64) -> Result<(u32, i64, i64), Status> {
        let everything = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision,
            ..RangeRequest::default()
        };
        let range = match self
            .kv_query(&KvQuery::Range(everything), Consistency::Sequential)
            .await?
        {
            KvResponse::Range(range) => range,
            other => return Err(unexpected("hash range", &other)),
        };
        let compact_revision = match self
            .kv_query(&KvQuery::Status, Consistency::Sequential)
            .await?
        {
            KvResponse::Status {
                compact_revision, ..
            } => compact_revision,
            other => return Err(unexpected("status", &other)),
        };
        let mut hasher = crc32fast::Hasher::new();
        for key_value in range.kvs {
            let key_value = convert::key_value(key_value);
            hasher.update(&prost::Message::encode_to_vec(&key_value));
        }
        let hash_revision = if revision == 0 {
            range.revision
        } else {
            revision
        };
        Ok((hasher.finalize(), compact_revision, hash_revision))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        let request = request.into_inner();
        let Some(peer_url) = request.peer_ur_ls.first() else {
            return Err(Status::invalid_argument(
                "etcdserver: member add needs a peer URL",
            ));
        };
        let status = self.backend.node_status().await?;
        // A new member takes the next free node id; its transport address is the peer URL
        // without the scheme.
        let id = self
            .backend
            .members(&status)
            .iter()
            .map(|member| member.id)
            .max()
            .unwrap_or(0)
            + 1;
        let address = peer_url
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string();
        self.backend.gateway.node().add_peer_address(id, address);
        let change = if request.is_learner {
            MembershipChange::AddLearner(id)
        } else {
            MembershipChange::AddVoter(id)
        };
        let members = self.backend.change_membership(change).await?;
        let mut member = self.backend.member(id, request.is_learner);
        member.peer_ur_ls = request.peer_ur_ls.clone();
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(self.backend.header(0).await),
            member: Some(member),
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let id = request.into_inner().id;
        let status = self.backend.node_status().await?;
        if !Backend::is_member(&status, id) {
            return Err(Status::not_found(status::MEMBER_NOT_FOUND));
        }
        let members = self
            .backend
            .change_membership(MembershipChange::Remove(id))
            .await?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(self.backend.header(0).await),
            members,
        }))
    }

    async fn member_update(
        &self,
        request: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let request = request.into_inner();
        let status = self.backend.node_status().await?;
        if !Backend::is_member(&status, request.id) {
            return Err(Status::not_found(status::MEMBER_NOT_FOUND));
        }
        if let Some(peer_url) = request.peer_ur_ls.first() {
            let address = peer_url
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .to_string();
            self.backend
                .gateway
                .node()
                .add_peer_address(request.id, address);
        }
        Ok(Response::new(pb::MemberUpdateResponse {
            header: Some(self.backend.header(0).await),
            members: self.backend.members(&status),
        }))
    }

    async fn member_list(
        &self,
        _request: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        let status = self.backend.node_status().await?;
        Ok(Response::new(pb::MemberListResponse {
            header: Some(self.backend.header(0).await),
            members: self.backend.members(&status),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let id = request.into_inner().id;
        let status = self.backend.node_status().await?;
        if !Backend::is_member(&status, id) {
            return Err(Status::not_found(status::MEMBER_NOT_FOUND));
        }
        if !status.membership.learners.contains(&id) {
            return Err(Status::failed_precondition(
                "etcdserver: can only promote a learner member",
            ));
        }
        let members = self
            .backend
            .change_membership(MembershipChange::AddVoter(id))
            .await?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: Some(self.backend.header(0).await),
            members,
        }))
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        _request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        // No alarm is ever raised: the kv machine refuses writes beyond its history bound
        // with etcd's "database space exceeded" error on each request instead.
        Ok(Response::new(pb::AlarmResponse {
            header: Some(self.backend.header(0).await),
            alarms: Vec::new(),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let status = self.backend.node_status().await?;
        let revision = self.backend.revision_local().await?;
        let id = self.backend.gateway.node().id();
        let is_learner =
            status.membership.learners.contains(&id) && !status.membership.voters.contains(&id);
        let leader = if status.soft_state.role == Role::Leader {
            id
        } else {
            status.soft_state.leader.unwrap_or(0)
        };
        Ok(Response::new(pb::StatusResponse {
            header: Some(self.backend.header(revision).await),
            version: self.backend.config.version.clone(),
            db_size: 0,
            leader,
            raft_index: status.hard_state.commit,
            raft_term: status.hard_state.term,
            raft_applied_index: status.applied,
            errors: Vec::new(),
            db_size_in_use: 0,
            is_learner,
        }))
    }

    async fn defragment(
        &self,
        _request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        // The log compacts through snapshots; there is no database file to defragment.
        Ok(Response::new(pb::DefragmentResponse {
            header: Some(self.backend.header(0).await),
        }))
    }

    async fn hash(
        &self,
        _request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        let (hash, _, revision) = self.backend.hash_at(0).await?;
        Ok(Response::new(pb::HashResponse {
            header: Some(self.backend.header(revision).await),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        let revision = request.into_inner().revision;
        let (hash, compact_revision, hash_revision) = self.backend.hash_at(revision).await?;
        let current = self.backend.revision_local().await?;
        Ok(Response::new(pb::HashKvResponse {
            header: Some(self.backend.header(current).await),
            hash,
            compact_revision,
            hash_revision,
        }))
    }

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

    async fn snapshot(
        &self,
        _request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(Status::unimplemented(
            "etcdserver: snapshot is not supported by this server",
        ))
    }

    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        let status = self.backend.node_status().await?;
        if status.soft_state.role != Role::Leader {
            return Err(Status::failed_precondition(status::NOT_LEADER));
        }
        if !status.membership.voters.contains(&target) {
            return Err(Status::failed_precondition(status::BAD_LEADER_TRANSFEREE));
        }
        self.backend
            .gateway
            .node()
            .transfer_leadership(target)
            .await
            .map_err(node_status)?;
        Ok(Response::new(pb::MoveLeaderResponse {
            header: Some(self.backend.header(0).await),
        }))
    }
}
