#include "kbus/kafka/admin.hpp"

#include <algorithm>

#include "rd_handles.hpp"

namespace kbus::kafka {

namespace {
// Serves the handle's queued log lines (RouteLogs) before it is destroyed, so that errors such
// as "connection refused" reach kbus's log instead of vanishing with the handle.
struct ServeLogsOnExit {
  rd_kafka_t* rk;
  ~ServeLogsOnExit() { rd_kafka_poll(rk, 0); }
};

detail::RdKafkaPtr AdminHandle(const ClientConfig& client) {
  std::map<std::string, std::string> props = {{"bootstrap.servers", client.brokers},
                                              {"client.id", client.client_id}};
  for (const auto& [k, v] : client.properties) props[k] = v;
  auto conf = detail::MakeConf(props);
  detail::RouteLogs(conf.get());
  return detail::NewHandle(RD_KAFKA_PRODUCER, conf);
}
}  // namespace

Status CreateTopics(const ClientConfig& client, const std::vector<TopicSpec>& topics,
                    bool if_not_exists, std::chrono::milliseconds timeout) {
  if (topics.empty()) return Ok();
  auto rk = AdminHandle(client);
  ServeLogsOnExit serve_logs{rk.get()};
  char err[512];
  std::vector<rd_kafka_NewTopic_t*> new_topics;
  auto cleanup = [&] {
    rd_kafka_NewTopic_destroy_array(new_topics.data(), new_topics.size());
  };
  for (const auto& t : topics) {
    rd_kafka_NewTopic_t* nt = rd_kafka_NewTopic_new(t.name.c_str(), t.partitions,
                                                    t.replication_factor, err, sizeof err);
    if (nt == nullptr) {
      cleanup();
      return Error(ErrorCode::kInvalidArgument, "topic '" + t.name + "': " + err);
    }
    new_topics.push_back(nt);
    for (const auto& [k, v] : t.configs) {
      if (rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str())) {
        cleanup();
        return Error(ErrorCode::kInvalidArgument, "topic '" + t.name + "': bad config " + k);
      }
    }
  }
  detail::RdQueuePtr queue(rd_kafka_queue_new(rk.get()));
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(options, static_cast<int>(timeout.count()), err, sizeof err);
  rd_kafka_AdminOptions_set_request_timeout(options, static_cast<int>(timeout.count()), err, sizeof err);
  rd_kafka_CreateTopics(rk.get(), new_topics.data(), new_topics.size(), options, queue.get());
  rd_kafka_AdminOptions_destroy(options);
  cleanup();

  detail::RdEventPtr event(rd_kafka_queue_poll(queue.get(), static_cast<int>(timeout.count()) + 5000));
  // The embedded broker never answers CreateTopics: librdkafka reports a timed-out event.
  if (!event || rd_kafka_event_error(event.get()) == RD_KAFKA_RESP_ERR__TIMED_OUT) {
    return Error(ErrorCode::kTimeout, "no answer to CreateTopics within " +
                                          std::to_string(timeout.count()) +
                                          " ms (the embedded broker has no admin API: use "
                                          "`kbus broker --topic NAME:PARTITIONS` instead)",
                 true);
  }
  if (rd_kafka_event_error(event.get())) {
    return Error(ErrorCode::kTransport,
                 std::string("CreateTopics failed: ") + rd_kafka_event_error_string(event.get()));
  }
  const rd_kafka_CreateTopics_result_t* result = rd_kafka_event_CreateTopics_result(event.get());
  size_t count = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(result, &count);
  std::string failures;
  for (size_t i = 0; i < count; ++i) {
    const rd_kafka_resp_err_t e = rd_kafka_topic_result_error(results[i]);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS && if_not_exists) continue;
    if (!failures.empty()) failures += "; ";
    failures += std::string(rd_kafka_topic_result_name(results[i])) + ": " +
                (rd_kafka_topic_result_error_string(results[i])
                     ? rd_kafka_topic_result_error_string(results[i])
                     : rd_kafka_err2str(e));
  }
  if (!failures.empty()) return Error(ErrorCode::kTransport, "cannot create topics: " + failures);
  return Ok();
}

Result<std::vector<TopicInfo>> ListTopics(const ClientConfig& client,
                                          std::chrono::milliseconds timeout) {
  auto rk = AdminHandle(client);
  ServeLogsOnExit serve_logs{rk.get()};
  const rd_kafka_metadata_t* md = nullptr;
  const rd_kafka_resp_err_t err =
      rd_kafka_metadata(rk.get(), 1, nullptr, &md, static_cast<int>(timeout.count()));
  if (err) {
    return Error(ErrorCode::kTransport,
                 std::string("cannot read cluster metadata: ") + rd_kafka_err2str(err), true);
  }
  std::vector<TopicInfo> out;
  for (int i = 0; i < md->topic_cnt; ++i) {
    out.push_back({md->topics[i].topic, md->topics[i].partition_cnt});
  }
  rd_kafka_metadata_destroy(md);
  return out;
}

Result<std::map<std::string, std::int64_t>> GroupLag(const ClientConfig& client, const std::string& group,
                                                     const std::vector<TopicInfo>& topics,
                                                     std::chrono::milliseconds timeout) {
  std::map<std::string, std::int64_t> lag;
  if (topics.empty()) return lag;
  std::map<std::string, std::string> props = {{"bootstrap.servers", client.brokers},
                                              {"client.id", client.client_id}};
  for (const auto& [k, v] : client.properties) props[k] = v;
  props["group.id"] = group;  // whose offsets OffsetFetch reads; the handle never joins
  props["enable.auto.commit"] = "false";
  detail::RdKafkaPtr rk;
  try {
    auto conf = detail::MakeConf(props);
    detail::RouteLogs(conf.get());
    rk = detail::NewHandle(RD_KAFKA_CONSUMER, conf);
  } catch (const std::exception& e) {
    return Error(ErrorCode::kInvalidArgument, e.what());
  }
  ServeLogsOnExit serve_logs{rk.get()};
  detail::RdPartitionListPtr committed(rd_kafka_topic_partition_list_new(0));
  for (const auto& t : topics) {
    for (int p = 0; p < t.partitions; ++p) rd_kafka_topic_partition_list_add(committed.get(), t.name.c_str(), p);
  }
  if (rd_kafka_resp_err_t err = rd_kafka_committed(rk.get(), committed.get(), static_cast<int>(timeout.count()))) {
    return Error(ErrorCode::kTransport, "cannot read the offsets of group '" + group + "': " + rd_kafka_err2str(err),
                 true);
  }
  // The ends of the partitions that have a committed offset: ListOffsets for "latest" (-1).
  detail::RdPartitionListPtr ends(rd_kafka_topic_partition_list_new(0));
  for (int i = 0; i < committed->cnt; ++i) {
    const auto& c = committed->elems[i];
    if (c.err == RD_KAFKA_RESP_ERR_NO_ERROR && c.offset >= 0) {
      rd_kafka_topic_partition_list_add(ends.get(), c.topic, c.partition)->offset = -1;
    }
  }
  if (ends->cnt == 0) return lag;
  if (rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk.get(), ends.get(), static_cast<int>(timeout.count()))) {
    return Error(ErrorCode::kTransport, std::string("cannot read the ends of the partitions: ") + rd_kafka_err2str(err),
                 true);
  }
  for (int i = 0; i < ends->cnt; ++i) {
    const auto& e = ends->elems[i];
    if (e.err != RD_KAFKA_RESP_ERR_NO_ERROR || e.offset < 0) continue;
    const rd_kafka_topic_partition_t* c =
        rd_kafka_topic_partition_list_find(committed.get(), e.topic, e.partition);
    lag[e.topic] += std::max<std::int64_t>(0, e.offset - c->offset);
  }
  return lag;
}

Result<std::map<std::string, std::string>> DescribeTopicConfigs(const ClientConfig& client,
                                                                const std::string& topic,
                                                                std::chrono::milliseconds timeout) {
  auto rk = AdminHandle(client);
  ServeLogsOnExit serve_logs{rk.get()};
  char err[512];
  rd_kafka_ConfigResource_t* resource = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic.c_str());
  detail::RdQueuePtr queue(rd_kafka_queue_new(rk.get()));
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk.get(), RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
  rd_kafka_AdminOptions_set_request_timeout(options, static_cast<int>(timeout.count()), err, sizeof err);
  rd_kafka_DescribeConfigs(rk.get(), &resource, 1, options, queue.get());
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_ConfigResource_destroy(resource);

  detail::RdEventPtr event(rd_kafka_queue_poll(queue.get(), static_cast<int>(timeout.count()) + 5000));
  if (!event || rd_kafka_event_error(event.get()) == RD_KAFKA_RESP_ERR__TIMED_OUT) {
    return Error(ErrorCode::kTimeout,
                 "no answer to DescribeConfigs for topic '" + topic + "' within " + std::to_string(timeout.count()) +
                     " ms (the embedded broker has no admin API)",
                 true);
  }
  if (rd_kafka_event_error(event.get())) {
    return Error(ErrorCode::kTransport, "DescribeConfigs of topic '" + topic +
                                            "' failed: " + rd_kafka_event_error_string(event.get()));
  }
  const rd_kafka_DescribeConfigs_result_t* result = rd_kafka_event_DescribeConfigs_result(event.get());
  size_t count = 0;
  const rd_kafka_ConfigResource_t** resources = rd_kafka_DescribeConfigs_result_resources(result, &count);
  if (count != 1) {
    return Error(ErrorCode::kTransport, "DescribeConfigs of topic '" + topic + "' answered " +
                                            std::to_string(count) + " resources, not 1");
  }
  if (const rd_kafka_resp_err_t e = rd_kafka_ConfigResource_error(resources[0])) {
    const char* why = rd_kafka_ConfigResource_error_string(resources[0]);
    return Error(ErrorCode::kTransport,
                 "cannot describe topic '" + topic + "': " + (why != nullptr ? why : rd_kafka_err2str(e)));
  }
  size_t entry_count = 0;
  const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(resources[0], &entry_count);
  std::map<std::string, std::string> out;
  for (size_t i = 0; i < entry_count; ++i) {
    const char* value = rd_kafka_ConfigEntry_value(entries[i]);
    out[rd_kafka_ConfigEntry_name(entries[i])] = value != nullptr ? value : "";
  }
  return out;
}

}  // namespace kbus::kafka
